//! The guest-physical address map and fixed ports/IRQs of a twinbox microVM.

/// Boot GDT and IDT (PVH entry: flat 32-bit segments).
pub const GDT_START: u64 = 0x500;
pub const IDT_START: u64 = 0x520;
/// PVH `hvm_start_info` (its address goes in rbx) and the module list after it.
pub const PVH_INFO_START: u64 = 0x6000;
pub const MODLIST_START: u64 = 0x6040;
/// PVH memory map.
pub const MEMMAP_START: u64 = 0x7000;
/// Kernel command line (x86 COMMAND_LINE_SIZE is 2048).
pub const CMDLINE_START: u64 = 0x20000;
pub const CMDLINE_MAX: usize = 2048;
/// MP table (in the EBDA, which Linux scans).
pub const MPTABLE_START: u64 = 0x9fc00;
/// End of low RAM / start of the reserved legacy area.
pub const EBDA_START: u64 = 0x9fc00;
pub const LEGACY_END: u64 = 0x10_0000;
/// Where high RAM starts; kernels load at or above it.
pub const HIMEM_START: u64 = 0x10_0000;
/// The 32-bit MMIO gap: [MMIO_START, 4 GiB). Virtio-mmio devices live at its start.
pub const MMIO_START: u64 = 0xd000_0000;
pub const MMIO_SLOT: u64 = 0x1000;
pub const FIRST_ADDR_PAST_32BITS: u64 = 1 << 32;
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
pub const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// COM1.
pub const SERIAL_PORT: u16 = 0x3f8;
pub const SERIAL_IRQ: u32 = 4;
/// i8042 command port: a write of 0xFE resets the machine.
pub const I8042_PORT: u16 = 0x60;
/// The boot-timer port: the guest agent writes [`BOOT_MAGIC`] here when it starts.
pub const BOOT_TIMER_PORT: u16 = 0x3f0;
pub const BOOT_MAGIC: u8 = 123;
/// IRQs for virtio devices: 5, 6, ... (up to 23 on the IOAPIC).
pub const VIRTIO_IRQ_BASE: u32 = 5;
pub const IRQ_MAX: u32 = 23;

/// Guest RAM ranges for `size` bytes: below the MMIO gap, the rest above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(u64, u64)> {
    if size <= MMIO_START {
        vec![(0, size)]
    } else {
        vec![(0, MMIO_START), (FIRST_ADDR_PAST_32BITS, size - MMIO_START)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_skips_the_mmio_gap() {
        assert_eq!(ram_ranges(256 << 20), vec![(0, 256 << 20)]);
        let r = ram_ranges(4 << 30);
        assert_eq!(r[0], (0, MMIO_START));
        assert_eq!(r[1].0, 1 << 32);
        assert_eq!(r[0].1 + r[1].1, 4 << 30);
    }
}
