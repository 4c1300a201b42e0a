//! The jail a container's VMM process enters once its VM is built and before any
//! guest instruction runs (Firecracker's jailer is the model): a mount namespace of its
//! own pivoted into an empty per-VM directory, an unprivileged uid/gid that no other
//! VMM holds, no capabilities (bounding set included), no_new_privs, not dumpable, and
//! killed with its monitor. Everything the VM needs — /dev/kvm, guest memory, vCPUs,
//! disks, the TAP, the console, the vsock listener — is opened before; what stays
//! reachable afterwards is the jail directory, which holds only the vsock sockets.

use super::VmmError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The first uid/gid handed to VMM processes, and how many there are: far above
/// login accounts and the subordinate ranges setup.sh hands out (200000+).
pub const ID_BASE: u32 = 1_900_000_000;
pub const ID_COUNT: u32 = 65_536;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct JailSpec {
    /// The empty directory that becomes the VMM's root (owned by `uid`, mode 0700).
    pub dir: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

fn jail_err(step: &'static str) -> impl FnOnce(nix::Error) -> VmmError {
    move |e| VmmError::Jail(format!("{step}: {e}"))
}

/// One VMM identity, held (by an flock on its slot file) for as long as this lives, so
/// no two running VMMs share a uid — one could otherwise signal the other. The slot
/// file is removed when the identity is let go.
#[derive(Debug)]
pub struct JailId {
    pub id: u32,
    path: PathBuf,
    _lock: File,
}

impl JailId {
    /// A free identity, its slot file `vmm-<n>.lock` in `dir`, trying the slot `hint`
    /// picks first (a container id's hash keeps a container on one uid across
    /// restarts when it can).
    pub fn allocate(dir: &Path, hint: &str) -> Result<JailId, VmmError> {
        use std::os::unix::fs::MetadataExt;
        std::fs::create_dir_all(dir)?;
        let start = hint
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % ID_COUNT;
        let mut slot = start;
        let mut tried = 0;
        while tried < ID_COUNT {
            if !unclaimed(ID_BASE + slot) {
                slot = (slot + 1) % ID_COUNT;
                tried += 1;
                continue;
            }
            let path = dir.join(format!("vmm-{slot}.lock"));
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                // The holder before may have removed the file between our open and our
                // lock: then the lock is on a file nobody else sees; take the slot again.
                let same = match (f.metadata(), std::fs::metadata(&path)) {
                    (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                    _ => false,
                };
                if same {
                    return Ok(JailId {
                        id: ID_BASE + slot,
                        path,
                        _lock: f,
                    });
                }
                continue;
            }
            slot = (slot + 1) % ID_COUNT;
            tried += 1;
        }
        Err(VmmError::Jail(format!(
            "all {ID_COUNT} VMM identities are in use"
        )))
    }
}

/// An id no account or group in /etc/passwd or /etc/group has, and no subordinate
/// range in /etc/subuid or /etc/subgid covers: a VMM sharing a user's uid could signal
/// that user's processes. (The files, not NSS: twinbox is linked statically, and
/// glibc's NSS modules cannot be loaded into a static binary.)
fn unclaimed(id: u32) -> bool {
    let field = |f: &str, col: usize| -> bool {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                l.split(':')
                    .nth(col)
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    == Some(id)
            })
    };
    if field("/etc/passwd", 2) || field("/etc/group", 2) {
        return false;
    }
    for f in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for l in text.lines() {
            let mut p = l.split(':').skip(1);
            if let (Some(Ok(start)), Some(Ok(n))) = (
                p.next().map(|s| s.trim().parse::<u64>()),
                p.next().map(|s| s.trim().parse::<u64>()),
            ) {
                if (start..start + n).contains(&u64::from(id)) {
                    return false;
                }
            }
        }
    }
    true
}

/// Where VMM identities are held, for every twinbox on the host whatever its state
/// and run roots (two installs must not hand out one uid).
pub const SLOTS_DIR: &str = "/run/twinbox-vmm-ids";

impl Drop for JailId {
    fn drop(&mut self) {
        // Removed while still locked: a new holder re-checks the file it locked.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Make `dir` the jail: empty, owned by the VMM's identity, 0700.
pub fn prepare_dir(dir: &Path, id: u32) -> Result<(), VmmError> {
    use std::os::unix::fs::PermissionsExt;
    crate::util::fs::remove_dir_all_if_exists(dir)?;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    std::os::unix::fs::chown(dir, Some(id), Some(id))?;
    Ok(())
}

/// Enter the jail. The calling process must be single-threaded: a mount namespace,
/// a root and credentials are per thread until threads share them by being created
/// afterwards.
pub fn enter(j: &JailSpec, parent: i32) -> Result<(), VmmError> {
    let cap_last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    // unshare(2) in a multi-threaded process moves only the calling thread: refuse.
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0);
    if threads != 1 {
        return Err(VmmError::Jail(format!(
            "the VMM has {threads} threads before its jail; it must have one"
        )));
    }
    // A network namespace of its own too: the TAP stays usable (an open descriptor),
    // and the host's abstract unix sockets (per network namespace, not per mount
    // namespace) are out of reach.
    crate::util::fs::private_mount_namespace(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(jail_err("a private mount and network namespace"))?;
    mount(
        Some(&j.dir),
        &j.dir,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(jail_err("bind the jail"))?;
    // Nothing to write, run, create devices in or find setuid (connecting to the
    // sockets in it needs no write access to the filesystem).
    mount(
        None::<&str>,
        &j.dir,
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(jail_err("restrict the jail"))?;
    nix::unistd::chdir(&j.dir).map_err(jail_err("chdir to the jail"))?;
    nix::unistd::pivot_root(".", ".").map_err(jail_err("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(jail_err("detach the host's root"))?;
    nix::unistd::chdir("/").map_err(jail_err("chdir /"))?;
    for cap in 0..=cap_last {
        // SAFETY: prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(VmmError::Jail(format!(
                "drop capability {cap} from the bounding set: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    nix::unistd::setgroups(&[]).map_err(jail_err("setgroups"))?;
    let gid = nix::unistd::Gid::from_raw(j.gid);
    let uid = nix::unistd::Uid::from_raw(j.uid);
    nix::unistd::setresgid(gid, gid, gid).map_err(jail_err("setresgid"))?;
    // From root to a non-zero uid everywhere: the permitted, effective and ambient
    // sets are cleared by the kernel.
    nix::unistd::setresuid(uid, uid, uid).map_err(jail_err("setresuid"))?;
    // SAFETY: prctl calls with integer arguments only.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(VmmError::Jail(format!(
                "no_new_privs: {}",
                std::io::Error::last_os_error()
            )));
        }
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        // A credential change clears the parent-death signal: set it again, then make
        // sure the monitor did not die before it was set.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
    if nix::unistd::getppid().as_raw() != parent {
        return Err(VmmError::Jail("the monitor is gone".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_accounts_and_subordinate_ranges_are_skipped() {
        assert!(!unclaimed(0), "root is an account");
        assert!(unclaimed(ID_BASE + 12345) || std::path::Path::new("/etc/subuid").exists());
    }

    #[test]
    fn identities_are_unique_while_held_and_their_files_go_with_them() {
        let d = tempfile::tempdir().unwrap();
        let a = JailId::allocate(d.path(), "same").unwrap();
        let b = JailId::allocate(d.path(), "same").unwrap();
        assert_ne!(a.id, b.id, "one hint, two holders, two ids");
        assert!((ID_BASE..ID_BASE + ID_COUNT).contains(&a.id));
        let a_id = a.id;
        drop(a);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "a's file removed"
        );
        // Free again: the same container gets its uid back.
        let c = JailId::allocate(d.path(), "same").unwrap();
        assert_eq!(c.id, a_id);
        // A file left by a holder that died (no lock on it) is taken over.
        drop(c);
        std::fs::write(d.path().join(format!("vmm-{}.lock", a_id - ID_BASE)), b"").unwrap();
        let e = JailId::allocate(d.path(), "same").unwrap();
        assert_eq!(e.id, a_id);
        drop(b);
        drop(e);
    }
}
