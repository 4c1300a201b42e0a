//! virtiofsd, the back end of a microVM's virtio-fs shares: one daemon per shared
//! directory, started by the monitor, sandboxed as virtiofsd sandboxes itself (its own
//! mount, pid and network namespaces pivoted into the shared directory, a seccomp
//! filter that kills on anything else), and gone when the VMM hangs up.
//!
//! The monitor binds the listening socket itself and passes it as `--fd`, connects to
//! it at once (the connection waits in the backlog until virtiofsd accepts), removes
//! the path, and hands the connected end to the VMM: nothing is left to race for, and
//! the jailed VMM needs no path to reach its back end.
//!
//! A share may carry an overlay to mount first (a microVM's root: the same overlay a
//! process container gets, built from the image's layers and the container's upper
//! directory): the daemon's child mounts it in a mount namespace of its own before
//! exec, so it exists only for virtiofsd and goes with it.

use crate::vmm::VmmError;
use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where scripts/virtiofsd.sh installs it (before $PATH is tried).
pub const INSTALLED: &str = "/usr/local/libexec/twinbox/virtiofsd";

/// One directory to share.
#[derive(Debug, Clone)]
pub struct ShareSpec {
    /// The tag the guest mounts it by.
    pub tag: String,
    pub dir: PathBuf,
    pub read_only: bool,
    /// Overlay mount options (lowerdir=…,upperdir=…,workdir=…) to mount on `dir` in
    /// the daemon's own mount namespace first.
    pub overlay: Option<String>,
    /// The guest may make device nodes here (its root: as a process container may;
    /// never in a host directory or volume, where a node such as `b 8:0 0666` would
    /// open the host's disk to whoever reaches the directory on the host).
    pub mknod: bool,
}

/// A running virtiofsd; killed (if still there) and reaped when dropped.
#[derive(Debug)]
pub struct Virtiofsd {
    child: Child,
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The virtiofsd binary: $TWINBOX_VIRTIOFSD, the installed one, or $PATH's.
pub fn binary() -> Result<PathBuf, VmmError> {
    if let Some(p) = std::env::var_os("TWINBOX_VIRTIOFSD") {
        return Ok(PathBuf::from(p));
    }
    if Path::new(INSTALLED).exists() {
        return Ok(PathBuf::from(INSTALLED));
    }
    crate::util::fs::which("virtiofsd").ok_or_else(|| {
        VmmError::Device(
            "virtiofsd not found (the virtio-fs back end of microVM shares): run scripts/setup.sh, which installs it".into(),
        )
    })
}

/// virtiofsd's arguments for `s`, its listening socket being descriptor `fd`.
pub fn args(s: &ShareSpec, fd: RawFd) -> Vec<String> {
    let mut a = vec![
        format!("--fd={fd}"),
        format!("--shared-dir={}", s.dir.display()),
        "--sandbox=namespace".into(),
        "--seccomp=kill".into(),
        // Attributes and entries cached for a second, data not kept past close: what
        // another container writes shows up without the guest reopening the share.
        "--cache=auto".into(),
        "--log-level=error".into(),
    ];
    if s.read_only {
        a.push("--readonly".into());
    }
    if !s.mknod {
        a.push("--modcaps=-mknod".into());
    }
    a
}

const LISTEN_FD: RawFd = 3;

/// Start virtiofsd for `s` (its socket made in `sock_dir`, its log to `log`); the
/// stream is the VMM's connection to it.
pub fn start(
    s: &ShareSpec,
    sock_dir: &Path,
    log: &std::fs::File,
) -> Result<(Virtiofsd, UnixStream), VmmError> {
    let err = |what: &str, e: std::io::Error| {
        VmmError::Device(format!("virtio-fs {}: {what}: {e}", s.tag))
    };
    let bin = binary()?;
    let path = sock_dir.join(format!("fs-{}.sock", s.tag));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| err("bind", e))?;
    let overlay = match &s.overlay {
        Some(opts) => Some((
            CString::new(s.dir.as_os_str().as_bytes()).map_err(|e| err("path", e.into()))?,
            CString::new(opts.as_bytes()).map_err(|e| err("overlay", e.into()))?,
        )),
        None => None,
    };
    // Above 3, so the dup2 below always copies it (and clears close-on-exec).
    let lfd = crate::vmm::process::dup_high(listener.as_raw_fd()).map_err(|e| err("socket", e))?;
    let parent = std::process::id() as i32;
    let mut cmd = Command::new(&bin);
    cmd.args(args(s, LISTEN_FD))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.try_clone().map_err(|e| err("log", e))?);
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, prctl, unshare,
    // mount) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(lfd, LISTEN_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the monitor is gone"));
            }
            if let Some((dir, opts)) = &overlay {
                mount_overlay(dir, opts)?;
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    // SAFETY: closing the duplicate made above, which nothing else uses.
    unsafe { libc::close(lfd) };
    let child = spawned.map_err(|e| err(&format!("start {}", bin.display()), e))?;
    let daemon = Virtiofsd { child };
    let stream = UnixStream::connect(&path);
    let _ = std::fs::remove_file(&path);
    drop(listener);
    Ok((daemon, stream.map_err(|e| err("connect", e))?))
}

/// In the forked child: a private mount namespace with the overlay on `dir`.
fn mount_overlay(dir: &CString, opts: &CString) -> std::io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // SAFETY: unshare and mount with NUL-terminated strings that outlive the calls.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            c"overlay".as_ptr(),
            dir.as_ptr(),
            c"overlay".as_ptr(),
            0,
            opts.as_ptr().cast(),
        ))
    }
}

impl Virtiofsd {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_shares_are_read_only_in_the_daemon() {
        let s = ShareSpec {
            tag: "tbfs0".into(),
            dir: "/v/_data".into(),
            read_only: true,
            overlay: None,
            mknod: false,
        };
        let a = args(&s, 3);
        assert!(a.contains(&"--modcaps=-mknod".to_string()));
        assert!(a.contains(&"--fd=3".to_string()));
        assert!(a.contains(&"--shared-dir=/v/_data".to_string()));
        assert!(a.contains(&"--readonly".to_string()));
        assert!(a.contains(&"--sandbox=namespace".to_string()));
        assert!(a.contains(&"--seccomp=kill".to_string()));
        let rw = args(
            &ShareSpec {
                read_only: false,
                ..s.clone()
            },
            3,
        );
        assert!(!rw.iter().any(|x| x == "--readonly"));
        let root = args(&ShareSpec { mknod: true, ..s }, 3);
        assert!(!root.iter().any(|x| x.starts_with("--modcaps")));
    }
}
