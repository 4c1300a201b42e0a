//! The exec shim: what a sealed in-memory copy of twinbox runs (argv[0] `tb-exec`)
//! after `nsenter::exec` put it in the container's cgroup, entered the container's
//! namespaces and exec'd it. It confines itself as the container is confined, then
//! forks the exec'd process into the container's pid namespace — as a child of the
//! monitor (CLONE_PARENT), which reaps it — reports its pid, and exits.

use crate::init::confine::{self, Confinement};
use crate::init::stdio::ChildStdio;
use crate::init::{workload, SetupError};
use crate::spec::ProcessSpec;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// argv[0] that makes `main` run [`main`] instead of the CLI.
pub const SHIM_ARG0: &str = "tb-exec";

/// The shim's stdio descriptors (inherited).
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub enum StdioFds {
    Pipes {
        stdin: RawFd,
        stdout: RawFd,
        stderr: RawFd,
    },
    Pty {
        sock: RawFd,
    },
}

impl StdioFds {
    pub fn fds(&self) -> Vec<RawFd> {
        match *self {
            StdioFds::Pipes {
                stdin,
                stdout,
                stderr,
            } => vec![stdin, stdout, stderr],
            StdioFds::Pty { sock } => vec![sock],
        }
    }
}

/// Everything the shim needs, written by the monitor into a memory file.
#[derive(Serialize, Deserialize, Debug)]
pub struct ShimPlan {
    pub process: ProcessSpec,
    pub confinement: Confinement,
    pub cap_last: u32,
    pub stdio: StdioFds,
    /// Write end: a failure before execve (see `workload::report`).
    pub report: RawFd,
    /// Write end: the forked process's pid.
    pub pid_out: RawFd,
}

/// Take ownership of an inherited descriptor.
fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: the monitor passed these descriptors to this process for it alone.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The shim's whole life. Never returns.
pub fn main() -> ! {
    confine::not_dumpable();
    let code = match run() {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(io::stderr(), "tb-exec: {e}");
            125
        }
    };
    // SAFETY: leave without running destructors of inherited state.
    unsafe { libc::_exit(code) }
}

fn run() -> io::Result<()> {
    let plan_fd: RawFd = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("no plan"))?;
    let mut text = String::new();
    File::from(owned(plan_fd)).read_to_string(&mut text)?;
    let plan: ShimPlan = serde_json::from_str(&text).map_err(io::Error::other)?;
    // Ours until the workload's execve, never the workload's.
    for fd in plan
        .stdio
        .fds()
        .into_iter()
        .chain([plan.report, plan.pid_out])
    {
        // SAFETY: fcntl on descriptors this process was given; integer arguments.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let stdio = match plan.stdio {
        StdioFds::Pipes {
            stdin,
            stdout,
            stderr,
        } => ChildStdio::Pipes {
            stdin: owned(stdin),
            stdout: owned(stdout),
            stderr: owned(stderr),
        },
        StdioFds::Pty { sock } => ChildStdio::Pty { sock: owned(sock) },
    };
    let mut pid_out = File::from(owned(plan.pid_out));
    // Confined before the process appears in the container: its keyring, bounding
    // set, seccomp filter and capabilities (the container's, plus SETUID/SETGID to
    // take on the exec's user) are set here, out of the container's sight, so nothing
    // in the container ever sees a process of ours with more.
    let conf = &plan.confinement;
    let confined = workload::confine_early(conf, plan.cap_last)
        .and_then(|_| workload::confine_late(conf))
        .and_then(|_| {
            // CAP_SETGID (6), CAP_SETUID (7).
            let keep = conf.caps | (1 << 6) | (1 << 7);
            crate::init::caps::set_all(keep).map_err(|e| SetupError::new("set capabilities", e))
        });
    if let Err(e) = confined {
        workload::report(plan.report, &e);
        return Ok(());
    }
    // SAFETY: this process is single-threaded. CLONE_PARENT makes the monitor the
    // child's parent, so the monitor reaps it.
    let pid = match unsafe { crate::init::fork_with(libc::CLONE_PARENT) } {
        Ok(pid) => pid,
        Err(e) => {
            workload::report(plan.report, &SetupError::new("fork into the container", e));
            return Ok(());
        }
    };
    if pid == 0 {
        drop(pid_out);
        let e = workload::exec_workload(
            &plan.process,
            stdio,
            &plan.confinement,
            plan.cap_last,
            false,
            true,
        );
        workload::report(plan.report, &e);
        // SAFETY: leave the forked child without running destructors.
        unsafe { libc::_exit(126) };
    }
    write!(pid_out, "{pid}")?;
    Ok(())
}
