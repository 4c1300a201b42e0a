//! Crash-safe file writes and advisory locks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Write `data` to `path` (mode 0600) so that a crash leaves either the old or the new
/// content, never a mix: temp file in the same directory, fsync, rename. (The
/// directory is not fsynced: after a power loss the rename may be lost, leaving the
/// previous complete version, which is consistent; it saves a disk flush per write on
/// the start-up path.)
pub fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    write_replace(path, data, true)
}

/// Like [`atomic_write`] but without the flush to disk: still never a torn file after
/// a crash of the writer, but a power loss may bring back the previous version. For
/// state that is rebuilt anyway when it is lost (a running container's status).
pub fn atomic_write_volatile(path: &Path, data: &[u8]) -> io::Result<()> {
    write_replace(path, data, false)
}

fn write_replace(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        // Owner-only: records, leases and indexes are twinbox's alone (a record may
        // carry `-e SECRET=…`).
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_data()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// An exclusive `flock` held until dropped.
#[derive(Debug)]
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Block until the exclusive lock on `path` (created if missing) is ours.
    pub fn exclusive(path: &Path) -> io::Result<Lock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        loop {
            // SAFETY: flock on an fd we own; no memory is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(Lock {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: unlocking an fd we own; closing it would unlock too.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Close every fd above 2 except those in `keep`, and mark those close-on-exec.
pub fn close_inherited_fds(keep: &[Option<i32>]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .flatten()
        .filter(|k| **k > 2)
        .map(|k| *k as u32)
        .collect();
    keep.sort();
    let mut lo = 3u32;
    for k in keep.iter().copied().chain(std::iter::once(u32::MAX)) {
        if lo < k {
            let hi = if k == u32::MAX { u32::MAX } else { k - 1 };
            // SAFETY: close_range only closes descriptors; nothing here uses them.
            unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0u32) };
        }
        lo = k.saturating_add(1);
    }
    for k in keep {
        // SAFETY: fcntl on an fd we keep; integer arguments.
        unsafe { libc::fcntl(k as i32, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Mark every fd above 2 close-on-exec (a last guard before execve). Where
/// close_range cannot (kernels before 5.11, a seccomp profile without it), each open
/// descriptor is marked from /proc/self/fd.
pub fn cloexec_all_above_stdio() {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: close_range with CLOEXEC only sets flags on descriptors.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return;
    }
    let fds: Vec<i32> = fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        // SAFETY: fcntl on a descriptor number; integer arguments (a stale one fails).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Remove a directory tree; missing is fine.
pub fn remove_dir_all_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Remove a file; missing is fine.
pub fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Bytes a file or a directory tree takes (apparent sizes; symlinks not followed).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}

/// `name` as the shell would find it on PATH (the first that exists).
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Make every mount of this mount namespace private: nothing mounted here propagates
/// to the namespace it was copied from, nor back.
pub fn make_mounts_private() -> nix::Result<()> {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
}

/// A mount namespace of this process's own (and the namespaces in `also`), its mounts
/// private: what it mounts from now on stays in it and goes with it.
pub fn private_mount_namespace(also: nix::sched::CloneFlags) -> nix::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS | also)?;
    make_mounts_private()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn lock_is_exclusive_across_fds() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let l = Lock::exclusive(&p).unwrap();
        let f = File::open(&p).unwrap();
        // SAFETY: non-blocking flock on our own fd.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, -1);
        drop(l);
        // SAFETY: as above.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0);
    }
}
