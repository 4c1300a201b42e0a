//! User namespaces for `--userns remap`: the container's root is an unprivileged host
//! id, and its root filesystem still shows the image's owners.
//!
//! The image layers stay as they are on disk (shared with every other container); the
//! container's init mounts *idmapped* views of them (`init::mounts::mount_idmapped`:
//! a mount whose ids are translated through the container's mapping) and overlays
//! those, while it still has the host's privileges. Then it moves into a new user
//! namespace whose maps the monitor writes, and becomes root there — host uid
//! `map.uid`.

use crate::spec::IdMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

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
    let pid = unsafe { crate::init::fork_with(libc::CLONE_NEWUSER) }?;
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

/// The two ends of the handshake in which the container's init asks the monitor for
/// its maps after unsharing its user namespace.
#[derive(Debug)]
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
pub fn unprivileged_network() -> Result<(), crate::init::SetupError> {
    for (k, v) in [
        ("net/ipv4/ip_unprivileged_port_start", "0"),
        ("net/ipv4/ping_group_range", "0 2147483647"),
    ] {
        std::fs::write(Path::new("/proc/sys").join(k), v)
            .map_err(|e| crate::init::SetupError::new(format!("set {k}"), e))?;
    }
    Ok(())
}
