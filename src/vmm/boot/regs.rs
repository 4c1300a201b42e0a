//! vCPU register state at the kernel entry point: GDT, segments, control registers,
//! general registers, FPU, and the local APIC's LINT0/LINT1.

use super::EntryMode;
use crate::vmm::layout::{GDT_START, IDT_START, PVH_INFO_START};
use crate::vmm::memory::GuestMemoryMmap;
use crate::vmm::VmmError;
use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

/// Pack a GDT entry from flags (access byte + granularity nibble), base and limit.
pub fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0xffff)
}

/// The KVM segment a GDT entry describes.
pub fn segment(entry: u64, index: u8) -> kvm_segment {
    let g = ((entry >> 55) & 1) as u8;
    let raw_limit = (((entry >> 32) & 0xf_0000) | (entry & 0xffff)) as u32;
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: ((entry >> 32) & 0xff00_0000) | ((entry >> 16) & 0x00ff_ffff),
        limit: if g == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: index as u16 * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        padding: 0,
        unusable: if present == 1 { 0 } else { 1 },
    }
}

/// The boot GDT for an entry mode.
pub fn gdt(mode: EntryMode) -> [u64; 4] {
    match mode {
        EntryMode::Pvh => [
            0,
            gdt_entry(0xc09b, 0, 0xffff_ffff), // 32-bit code
            gdt_entry(0xc093, 0, 0xffff_ffff), // data
            gdt_entry(0x008b, 0, 0x67),        // TSS
        ],
        EntryMode::Linux64 => [
            0,
            gdt_entry(0xa09b, 0, 0xfffff), // 64-bit code
            gdt_entry(0xc093, 0, 0xfffff), // data
            gdt_entry(0x808b, 0, 0xfffff), // TSS
        ],
    }
}

const PML4_START: u64 = 0x9000;
const PDPTE_START: u64 = 0xa000;
const PDE_START: u64 = 0xb000;
const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// Write the GDT/IDT (and, for 64-bit entry, identity page tables) into guest memory.
pub fn write_tables(mem: &GuestMemoryMmap, mode: EntryMode) -> Result<(), VmmError> {
    let w = |v: u64, a: u64| {
        mem.write_obj(v, GuestAddress(a))
            .map_err(|e| VmmError::Memory(e.to_string()))
    };
    for (i, e) in gdt(mode).iter().enumerate() {
        w(*e, GDT_START + i as u64 * 8)?;
    }
    w(0, IDT_START)?;
    if mode == EntryMode::Linux64 {
        // Identity-map the first GiB with 2 MiB pages.
        w(PDPTE_START | 0x03, PML4_START)?;
        w(PDE_START | 0x03, PDPTE_START)?;
        for i in 0..512u64 {
            w((i << 21) | 0x83, PDE_START + i * 8)?;
        }
    }
    Ok(())
}

/// Special registers for the entry mode, on top of KVM's defaults in `base`.
pub fn sregs(mut s: kvm_sregs, mode: EntryMode) -> kvm_sregs {
    let g = gdt(mode);
    let code = segment(g[1], 1);
    let data = segment(g[2], 2);
    let tss = segment(g[3], 3);
    s.gdt.base = GDT_START;
    s.gdt.limit = (std::mem::size_of_val(&g) - 1) as u16;
    s.idt.base = IDT_START;
    s.idt.limit = 7;
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = tss;
    match mode {
        EntryMode::Pvh => {
            s.cr0 = X86_CR0_PE | X86_CR0_ET;
            s.cr4 = 0;
        }
        EntryMode::Linux64 => {
            s.cr3 = PML4_START;
            s.cr4 |= X86_CR4_PAE;
            s.cr0 |= X86_CR0_PE | X86_CR0_PG;
            s.efer |= EFER_LME | EFER_LMA;
        }
    }
    s
}

/// General registers at the entry point.
pub fn regs(entry: u64, mode: EntryMode, zero_page: u64) -> kvm_regs {
    match mode {
        EntryMode::Pvh => kvm_regs {
            rflags: 0x2,
            rip: entry,
            rbx: PVH_INFO_START,
            ..Default::default()
        },
        EntryMode::Linux64 => kvm_regs {
            rflags: 0x2,
            rip: entry,
            rsp: 0x8ff0,
            rbp: 0x8ff0,
            rsi: zero_page,
            ..Default::default()
        },
    }
}

pub fn fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_get(l: &kvm_lapic_state, off: usize) -> u32 {
    let r = &l.regs[off..off + 4];
    u32::from_le_bytes([r[0] as u8, r[1] as u8, r[2] as u8, r[3] as u8])
}

fn lapic_set(l: &mut kvm_lapic_state, off: usize, v: u32) {
    for (i, b) in v.to_le_bytes().into_iter().enumerate() {
        l.regs[off + i] = b as _;
    }
}

/// LINT0 delivers ExtINT (the PIC), LINT1 delivers NMI.
pub fn set_lint(l: &mut kvm_lapic_state) {
    let mode = |reg: u32, m: u32| (reg & !0x700) | (m << 8);
    let v0 = lapic_get(l, APIC_LVT0);
    lapic_set(l, APIC_LVT0, mode(v0, APIC_MODE_EXTINT));
    let v1 = lapic_get(l, APIC_LVT1);
    lapic_set(l, APIC_LVT1, mode(v1, APIC_MODE_NMI));
}

/// Configure one vCPU's registers (CPUID and MSRs are set separately, before this).
pub fn setup(
    vcpu: &VcpuFd,
    entry: u64,
    mode: EntryMode,
    zero_page: u64,
    bsp: bool,
) -> Result<(), VmmError> {
    let k = |what| VmmError::kvm(what);
    if bsp {
        vcpu.set_regs(&regs(entry, mode, zero_page))
            .map_err(k("KVM_SET_REGS"))?;
        let s = vcpu.get_sregs().map_err(k("KVM_GET_SREGS"))?;
        vcpu.set_sregs(&sregs(s, mode))
            .map_err(k("KVM_SET_SREGS"))?;
    }
    vcpu.set_fpu(&fpu()).map_err(k("KVM_SET_FPU"))?;
    let mut l = vcpu.get_lapic().map_err(k("KVM_GET_LAPIC"))?;
    set_lint(&mut l);
    vcpu.set_lapic(&l).map_err(k("KVM_SET_LAPIC"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_match_the_architecture() {
        assert_eq!(gdt_entry(0xc09b, 0, 0xffff_ffff), 0x00cf_9b00_0000_ffff);
        assert_eq!(gdt_entry(0xc093, 0, 0xffff_ffff), 0x00cf_9300_0000_ffff);
        assert_eq!(gdt_entry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        let cs = segment(gdt_entry(0xc09b, 0, 0xffff_ffff), 1);
        assert_eq!(
            (cs.selector, cs.limit, cs.db, cs.l, cs.present, cs.s),
            (8, 0xffff_ffff, 1, 0, 1, 1)
        );
        let cs64 = segment(gdt_entry(0xa09b, 0, 0xfffff), 1);
        assert_eq!((cs64.l, cs64.db), (1, 0));
        assert_eq!(segment(0, 0).unusable, 1);
    }

    #[test]
    fn pvh_entry_is_protected_mode_without_paging() {
        let s = sregs(kvm_sregs::default(), EntryMode::Pvh);
        assert_eq!(s.cr0, X86_CR0_PE | X86_CR0_ET);
        assert_eq!(s.cr4, 0);
        assert_eq!(s.efer, 0);
        let r = regs(0x100_0000, EntryMode::Pvh, 0);
        assert_eq!((r.rip, r.rbx, r.rflags), (0x100_0000, PVH_INFO_START, 2));
    }

    #[test]
    fn long_mode_entry_has_paging() {
        let s = sregs(kvm_sregs::default(), EntryMode::Linux64);
        assert!(s.cr0 & X86_CR0_PG != 0 && s.efer & EFER_LMA != 0);
        assert_eq!(s.cr3, PML4_START);
        assert_eq!(regs(1, EntryMode::Linux64, 0x7000).rsi, 0x7000);
    }

    #[test]
    fn lint_modes() {
        let mut l = kvm_lapic_state::default();
        set_lint(&mut l);
        assert_eq!((lapic_get(&l, APIC_LVT0) >> 8) & 7, APIC_MODE_EXTINT);
        assert_eq!((lapic_get(&l, APIC_LVT1) >> 8) & 7, APIC_MODE_NMI);
    }
}
