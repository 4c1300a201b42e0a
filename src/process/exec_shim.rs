//! The exec shim: what a sealed in-memory copy of twinbox runs (argv[0] `tb-exec`)
//! after `nsenter::exec` entered the container's namespaces and exec'd it. It forks
//! the exec'd process into the container's pid namespace — as a child of the monitor
//! (CLONE_PARENT), which reaps it — reports its pid, and exits.

use crate::launch::confine::{self, Confinement};
use crate::launch::stdio::ChildStdio;
use crate::launch::{workload, SetupError};
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
    /// Read end: one byte once the monitor put the process in the cgroup.
    pub go: RawFd,
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
    let go = File::from(owned(plan.go));
    let mut pid_out = File::from(owned(plan.pid_out));
    // SAFETY: a fork-style clone of this single-threaded process (no CLONE_VM, no new
    // stack); CLONE_PARENT makes the monitor its parent, so the monitor reaps it.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        let e = SetupError::new("fork into the container", io::Error::last_os_error());
        workload::report(plan.report, &e);
        return Ok(());
    }
    if pid == 0 {
        drop(pid_out);
        let mut go = go;
        let mut b = [0u8; 1];
        let e = if go.read(&mut b).unwrap_or(0) != 1 {
            SetupError::new(
                "wait for the monitor",
                io::Error::from_raw_os_error(libc::EPIPE),
            )
        } else {
            workload::exec_workload(
                &plan.process,
                stdio,
                &plan.confinement,
                plan.cap_last,
                false,
            )
        };
        workload::report(plan.report, &e);
        // SAFETY: leave the forked child without running destructors.
        unsafe { libc::_exit(126) };
    }
    write!(pid_out, "{pid}")?;
    Ok(())
}
