//! User namespaces for `--userns remap`: the container's root is an unprivileged host
//! id, and its root filesystem still shows the image's owners.
//!
//! The image layers and the writable layer stay as they are on disk (shared with every
//! other container); the container's init mounts *idmapped* views of them (a mount
//! whose ids are translated through the container's mapping) and overlays those, while
//! it still has the host's privileges. Then it moves into a new user namespace whose
//! maps the monitor writes, and becomes root there — host uid `map.uid`.

use crate::spec::IdMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

fn check(rc: i64) -> io::Result<i64> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Write `map` as the uid and gid maps of `pid` (which has just unshared its user
/// namespace). We hold CAP_SETUID/CAP_SETGID in the parent namespace, so setgroups
/// stays allowed in the container (as under runc).
pub fn write_maps(pid: i32, map: &IdMap) -> io::Result<()> {
    std::fs::write(
        format!("/proc/{pid}/uid_map"),
        format!("0 {} {}\n", map.uid, map.size),
    )?;
    std::fs::write(
        format!("/proc/{pid}/gid_map"),
        format!("0 {} {}\n", map.gid, map.size),
    )
}

/// A user namespace with `map`, to idmap mounts with (its process is gone once this
/// returns; the namespace lives as long as the descriptor).
pub fn mapping_namespace(map: &IdMap) -> io::Result<OwnedFd> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // SAFETY: the child only blocks on the pipe and exits, touching no locks.
    let pid = unsafe { crate::launch::fork_with(libc::CLONE_NEWUSER) }?;
    if pid == 0 {
        drop(w);
        let mut b = [0u8; 1];
        let _ = File::from(r).read(&mut b);
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    drop(r);
    let result = write_maps(pid, map).and_then(|_| File::open(format!("/proc/{pid}/ns/user")));
    drop(w);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    Ok(result?.into())
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const OPEN_TREE_CLONE: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;

/// Mount `source` at `target` with its ids seen through the namespace `userns`.
pub fn mount_idmapped(source: &Path, target: &Path, userns: RawFd) -> io::Result<()> {
    let src = std::ffi::CString::new(source.as_os_str().as_encoded_bytes())?;
    // SAFETY: a NUL-terminated path; open_tree returns a new descriptor or -1.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32,
        )
    })?;
    // SAFETY: the kernel just returned this descriptor to us.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH, and a mount_attr that
    // lives across the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    let dst = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())?;
    // SAFETY: NUL-terminated paths; the detached tree is attached at `target`.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// The two ends of the handshake in which the container's init asks the monitor for
/// its maps after unsharing its user namespace.
pub struct Handshake {
    pub ask: File,
    pub done: File,
}

impl Handshake {
    /// In the child: the namespace is made, write the maps; returns once they are.
    pub fn ask(mut self) -> io::Result<()> {
        self.ask.write_all(b"u")?;
        drop(self.ask);
        let mut b = [0u8; 1];
        match self.done.read(&mut b)? {
            1 => Ok(()),
            _ => Err(io::Error::from_raw_os_error(libc::EPIPE)),
        }
    }
}

/// In the monitor: wait for the child's request (false if it ended first), write the
/// maps, answer.
pub fn serve(pid: i32, map: &IdMap, mut ask: File, mut done: File) -> io::Result<bool> {
    let mut b = [0u8; 1];
    if ask.read(&mut b)? != 1 {
        return Ok(false);
    }
    write_maps(pid, map)?;
    done.write_all(b"g")?;
    Ok(true)
}

/// In a remapped container's network namespace (owned by the host's user namespace,
/// so its root has no capability there): low ports and ICMP sockets for everyone, as
/// Docker sets for every container.
pub fn unprivileged_network() -> Result<(), crate::launch::SetupError> {
    for (k, v) in [
        ("net/ipv4/ip_unprivileged_port_start", "0"),
        ("net/ipv4/ping_group_range", "0 2147483647"),
    ] {
        std::fs::write(Path::new("/proc/sys").join(k), v)
            .map_err(|e| crate::launch::SetupError::new(format!("set {k}"), e))?;
    }
    Ok(())
}

/// Whether `pid` is in a user namespace other than ours.
pub fn has_own_userns(pid: i32) -> bool {
    let ours = std::fs::read_link("/proc/self/ns/user").ok();
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    theirs.is_some() && ours != theirs
}
