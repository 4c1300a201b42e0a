//! Guest memory: the RAM ranges mapped into the VMM and registered with KVM. Anonymous
//! memory by default; memfd-backed (MAP_SHARED) when a vhost-user back end must map the
//! same pages (virtio-fs: virtiofsd reads and writes guest buffers itself).

use super::layout::ram_ranges;
use super::VmmError;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use std::os::fd::FromRawFd;
use vm_memory::{Address, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<()>;

/// Map `size` bytes of guest RAM (not yet touched: the host commits pages lazily).
pub fn create(size: u64) -> Result<GuestMemoryMmap, VmmError> {
    let ranges: Vec<(GuestAddress, usize)> = ram_ranges(size)
        .into_iter()
        .map(|(a, l)| (GuestAddress(a), l as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| VmmError::Memory(e.to_string()))
}

/// Map `size` bytes of guest RAM from one memfd, each range at its own offset, shared,
/// so the memfd can be handed to a vhost-user back end. The memfd is sealed at its
/// size: no one holding it can shrink it under the VMM (a SIGBUS) or grow it.
pub fn create_shared(size: u64) -> Result<GuestMemoryMmap, VmmError> {
    let err = |what: &str, e: std::io::Error| VmmError::Memory(format!("{what}: {e}"));
    // SAFETY: the name is a NUL-terminated literal; the flags are valid for memfd_create.
    let fd = unsafe {
        libc::memfd_create(
            c"twinbox-guest-ram".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(err("memfd_create", std::io::Error::last_os_error()));
    }
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.set_len(size).map_err(|e| err("memfd size", e))?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS on a descriptor we own, with valid seal bits.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } < 0 {
        return Err(err("memfd seals", std::io::Error::last_os_error()));
    }
    let file = std::sync::Arc::new(file);
    let mut offset = 0u64;
    let mut ranges = Vec::new();
    for (a, l) in ram_ranges(size) {
        ranges.push((
            GuestAddress(a),
            l as usize,
            Some(FileOffset::from_arc(file.clone(), offset)),
        ));
        offset += l;
    }
    GuestMemoryMmap::from_ranges_with_files(&ranges).map_err(|e| VmmError::Memory(e.to_string()))
}

/// Register every region of `mem` as a KVM memory slot.
pub fn register(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), VmmError> {
    for (slot, r) in mem.iter().enumerate() {
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: r.start_addr().raw_value(),
            memory_size: r.len(),
            userspace_addr: r.as_ptr() as u64,
        };
        // SAFETY: the mapping is owned by `mem`, which the VM keeps alive for as long as
        // the VM fd exists; regions come from one collection and do not overlap.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(VmmError::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend};

    #[test]
    fn shared_memory_is_one_sealed_memfd_across_ranges() {
        let mem = create_shared(64 << 20).unwrap();
        let regions: Vec<_> = mem.iter().collect();
        assert_eq!(regions.len(), 1);
        let fo = regions[0].file_offset().expect("file-backed");
        assert_eq!(fo.start(), 0);
        // SAFETY: F_GET_SEALS on a descriptor the region keeps open.
        let seals = unsafe {
            libc::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(fo.file()),
                libc::F_GET_SEALS,
            )
        };
        assert_eq!(seals & libc::F_SEAL_SHRINK, libc::F_SEAL_SHRINK);
        assert!(fo.file().set_len(1 << 20).is_err(), "cannot shrink");
        mem.write_obj(0xabcdu32, GuestAddress(0x1000)).unwrap();
        let mut b = [0u8; 4];
        use std::os::unix::fs::FileExt;
        fo.file().read_exact_at(&mut b, 0x1000).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0xabcd, "the memfd sees guest writes");
    }
}
