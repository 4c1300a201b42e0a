//! Boot parameters: the memory map (shared), PVH `hvm_start_info` with its memmap and
//! module list, or the Linux zero page with its e820 table.

use crate::vmm::layout::*;
use crate::vmm::memory::GuestMemoryMmap;
use crate::vmm::VmmError;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const PVH_MAGIC: u32 = 0x336e_c578;

/// One memory map entry: (address, size, type).
pub type MapEntry = (u64, u64, u32);

/// The guest's memory map: low RAM, the reserved legacy hole, and high RAM.
pub fn memory_map(mem: &GuestMemoryMmap) -> Vec<MapEntry> {
    let mut v = vec![
        (0, EBDA_START, E820_RAM),
        (EBDA_START, LEGACY_END - EBDA_START, E820_RESERVED),
    ];
    for r in mem.iter() {
        let start = r.start_addr().0.max(HIMEM_START);
        let end = r.start_addr().0 + r.len();
        if end > start {
            v.push((start, end - start, E820_RAM));
        }
    }
    v
}

/// Initramfs location, if any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Initrd {
    pub addr: u64,
    pub size: u64,
}

/// Write PVH boot parameters.
pub fn write_pvh(mem: &GuestMemoryMmap, initrd: Option<Initrd>) -> Result<(), VmmError> {
    let map: Vec<hvm_memmap_table_entry> = memory_map(mem)
        .into_iter()
        .map(|(addr, size, ty)| hvm_memmap_table_entry {
            addr,
            size,
            type_: ty,
            reserved: 0,
        })
        .collect();
    let mut si = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_START,
        memmap_paddr: MEMMAP_START,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    if initrd.is_some() {
        si.nr_modules = 1;
        si.modlist_paddr = MODLIST_START;
    }
    let mut bp = BootParams::new(&si, GuestAddress(PVH_INFO_START));
    bp.set_sections(&map, GuestAddress(MEMMAP_START));
    if let Some(i) = initrd {
        bp.set_modules(
            &[hvm_modlist_entry {
                paddr: i.addr,
                size: i.size,
                ..Default::default()
            }],
            GuestAddress(MODLIST_START),
        );
    }
    PvhBootConfigurator::write_bootparams(&bp, mem).map_err(|e| VmmError::BootParams(e.to_string()))
}

/// Write the Linux zero page (64-bit boot protocol) at MEMMAP_START.
pub fn write_zero_page(
    mem: &GuestMemoryMmap,
    cmdline_len: usize,
    initrd: Option<Initrd>,
    setup_header: Option<linux_loader::loader::bootparam::setup_header>,
) -> Result<u64, VmmError> {
    let mut p = boot_params::default();
    if let Some(h) = setup_header {
        p.hdr = h;
    }
    p.hdr.type_of_loader = 0xff;
    p.hdr.boot_flag = 0xaa55;
    p.hdr.header = 0x5372_6448;
    p.hdr.cmd_line_ptr = CMDLINE_START as u32;
    p.hdr.cmdline_size = cmdline_len as u32;
    p.hdr.kernel_alignment = 0x0100_0000;
    if let Some(i) = initrd {
        p.hdr.ramdisk_image = i.addr as u32;
        p.hdr.ramdisk_size = i.size as u32;
    }
    for (i, (addr, size, ty)) in memory_map(mem).into_iter().enumerate() {
        p.e820_table[i] = boot_e820_entry {
            addr,
            size,
            r#type: ty,
        };
        p.e820_entries = i as u8 + 1;
    }
    LinuxBootConfigurator::write_bootparams(&BootParams::new(&p, GuestAddress(MEMMAP_START)), mem)
        .map_err(|e| VmmError::BootParams(e.to_string()))?;
    Ok(MEMMAP_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn map_has_low_ram_hole_and_high_ram() {
        let mem = crate::vmm::memory::create(64 << 20).unwrap();
        let m = memory_map(&mem);
        assert_eq!(m[0], (0, 0x9fc00, 1));
        assert_eq!(m[1], (0x9fc00, 0x100000 - 0x9fc00, 2));
        assert_eq!(m[2], (0x100000, (64 << 20) - 0x100000, 1));
    }

    #[test]
    fn pvh_start_info_is_written() {
        let mem = crate::vmm::memory::create(64 << 20).unwrap();
        write_pvh(
            &mem,
            Some(Initrd {
                addr: 0x200_0000,
                size: 4096,
            }),
        )
        .unwrap();
        let si: hvm_start_info = mem.read_obj(GuestAddress(PVH_INFO_START)).unwrap();
        assert_eq!({ si.magic }, PVH_MAGIC);
        assert_eq!({ si.version }, 1);
        assert_eq!({ si.memmap_entries }, 3);
        assert_eq!({ si.cmdline_paddr }, CMDLINE_START);
        assert_eq!({ si.nr_modules }, 1);
        let e: hvm_memmap_table_entry = mem.read_obj(GuestAddress(MEMMAP_START + 2 * 24)).unwrap();
        assert_eq!(({ e.addr }, { e.type_ }), (0x100000, 1));
        let m: hvm_modlist_entry = mem.read_obj(GuestAddress(MODLIST_START)).unwrap();
        assert_eq!(({ m.paddr }, { m.size }), (0x200_0000, 4096));
    }

    #[test]
    fn zero_page_has_e820_and_cmdline() {
        let mem = crate::vmm::memory::create(64 << 20).unwrap();
        write_zero_page(&mem, 100, None, None).unwrap();
        let p: boot_params = mem.read_obj(GuestAddress(MEMMAP_START)).unwrap();
        assert_eq!({ p.e820_entries }, 3);
        assert_eq!({ p.hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!({ p.hdr.boot_flag }, 0xaa55);
    }
}
