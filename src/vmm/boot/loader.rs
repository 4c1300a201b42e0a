//! Loading the kernel and the initramfs into guest memory.

use super::{EntryMode, KernelEntry};
use crate::vmm::layout::{HIMEM_START, MMIO_START};
use crate::vmm::memory::GuestMemoryMmap;
use crate::vmm::VmmError;
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{BzImage, Elf, KernelLoader};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// Load a vmlinux (ELF, PVH entry preferred) or a bzImage.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<KernelEntry, VmmError> {
    let mut f =
        File::open(path).map_err(|e| VmmError::Kernel(format!("{}: {e}", path.display())))?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)
        .map_err(|e| VmmError::Kernel(format!("{}: {e}", path.display())))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| VmmError::Kernel(e.to_string()))?;
    if &magic == b"\x7fELF" {
        let r = Elf::load(mem, None, &mut f, Some(GuestAddress(HIMEM_START)))
            .map_err(|e| VmmError::Kernel(format!("loading ELF {}: {e}", path.display())))?;
        let (entry, mode) = match r.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(a) => (a.0, EntryMode::Pvh),
            _ => (r.kernel_load.0, EntryMode::Linux64),
        };
        Ok(KernelEntry {
            entry,
            mode,
            kernel_end: r.kernel_end,
            setup_header: None,
        })
    } else {
        let r = BzImage::load(mem, None, &mut f, Some(GuestAddress(HIMEM_START)))
            .map_err(|e| VmmError::Kernel(format!("loading bzImage {}: {e}", path.display())))?;
        Ok(KernelEntry {
            entry: r.kernel_load.0 + 0x200,
            mode: EntryMode::Linux64,
            kernel_end: r.kernel_end,
            setup_header: r.setup_header,
        })
    }
}

/// Place the initramfs page-aligned at the top of low RAM; returns (address, size).
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    data: &[u8],
    kernel_end: u64,
) -> Result<(u64, u64), VmmError> {
    let low_end = mem
        .iter()
        .map(|r| {
            use vm_memory::GuestMemoryRegion;
            r.start_addr().0 + r.len()
        })
        .filter(|end| *end <= MMIO_START)
        .max()
        .unwrap_or(0);
    let size = data.len() as u64;
    let addr = low_end
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|a| *a >= kernel_end)
        .ok_or_else(|| VmmError::Kernel("the initramfs does not fit in guest memory".into()))?;
    mem.write_slice(data, GuestAddress(addr))
        .map_err(|e| VmmError::Memory(e.to_string()))?;
    Ok((addr, size))
}
