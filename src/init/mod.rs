//! The container's init: what both isolation models do between "the sandbox exists"
//! and `execve` — the root filesystem and its mounts, then the workload's stdio, user,
//! capabilities, seccomp filter and error reporting — so a workload gets the same world
//! whether the process model's first child or the microVM's guest agent runs it. Also
//! the reaper both use.

pub mod caps;
pub mod confine;
pub mod mounts;
pub mod reaper;
pub mod rootfs;
pub mod stdio;
pub mod syscall;
pub mod workload;

use crate::sandbox::SandboxError;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};

/// A set-up step that failed in a child, with its errno.
#[derive(Debug)]
pub struct SetupError {
    pub step: String,
    pub errno: i32,
}

impl SetupError {
    pub fn new(step: impl Into<String>, e: impl Into<io::Error>) -> SetupError {
        let e: io::Error = e.into();
        SetupError {
            step: step.into(),
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

/// Map a child's failure to what `run` reports (127 not found, 126 not executable).
pub fn setup_to_error(e: SetupError, arg0: &str) -> SandboxError {
    if e.step.starts_with("exec ") || e.step == "no command given" {
        match e.errno {
            libc::ENOENT | libc::ENOTDIR => return SandboxError::NotFound(arg0.to_string()),
            libc::EACCES | libc::EPERM | libc::ENOEXEC | libc::EISDIR => {
                return SandboxError::NotExecutable(arg0.to_string())
            }
            _ => {}
        }
    }
    SandboxError::Setup {
        step: e.step,
        source: io::Error::from_raw_os_error(e.errno),
    }
}

/// A pipe as (read, write), both close-on-exec.
pub fn pipe() -> Result<(File, File), SandboxError> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SandboxError::Io(e.into()))?;
    Ok((File::from(r), File::from(w)))
}

/// Read the report pipe to EOF: empty means execve happened.
pub fn read_report(mut r: File) -> Option<SetupError> {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    workload::parse_report(&s)
}

/// Set a terminal's window size.
pub fn set_winsize(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that lives across the call.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// clone(2) like fork(2), with `flags` (namespaces, CLONE_PARENT) and SIGCHLD as the
/// exit signal: 0 in the child, the child's pid in the parent.
///
/// # Safety
/// The child is a copy of the calling thread only: the caller must be
/// single-threaded, or the child must touch nothing another thread may hold (locks,
/// the allocator's state) before it execs or exits.
pub unsafe fn fork_with(flags: libc::c_int) -> io::Result<i32> {
    // SAFETY: no CLONE_VM and no new stack: a fork-style clone; the caller answers for
    // what the child does (see above).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(pid as i32)
    }
}

/// Which pid namespace a forked child is born in.
#[derive(Debug)]
pub enum PidNs {
    /// The caller's.
    Inherit,
    /// A new one: the child is its PID 1.
    New,
    /// An existing one (the fd of /proc/PID/ns/pid).
    Join(File),
}

/// Fork a child that runs `in_child` and exits with its return value.
///
/// The fork happens on a short-lived helper thread, which first enters (or creates) the
/// pid namespace: that changes only the helper's `pid_for_children`, so the caller's
/// threads are unaffected, and it works in a multithreaded process. The child is a copy
/// of the helper thread alone and never returns from here. Returns the child's pid as
/// the caller sees it.
pub fn fork_in(ns: PidNs, in_child: impl FnOnce() -> i32 + Send) -> Result<i32, SandboxError> {
    std::thread::scope(|s| {
        s.spawn(move || -> Result<i32, SandboxError> {
            let entered = match &ns {
                PidNs::Inherit => Ok(()),
                PidNs::New => nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID),
                PidNs::Join(f) => nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWPID),
            };
            entered.map_err(|e| SandboxError::Setup {
                step: "enter the pid namespace".into(),
                source: e.into(),
            })?;
            // SAFETY: fork from this thread; the child only runs `in_child` (launch set-up:
            // the allocator is made fork-safe by glibc, no std locks) and then _exits.
            match unsafe { libc::fork() } {
                -1 => Err(SandboxError::Io(io::Error::last_os_error())),
                0 => {
                    let code = in_child();
                    // SAFETY: leave the forked child without unwinding into the parent's
                    // thread machinery.
                    unsafe { libc::_exit(code) }
                }
                pid => Ok(pid),
            }
        })
        .join()
        .unwrap_or_else(|_| Err(SandboxError::Other("fork thread panicked".into())))
    })
}
