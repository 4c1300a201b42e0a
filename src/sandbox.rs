//! The contract between the monitor and a backend: what a running sandbox can do.
//!
//! `process` and `vmm` each implement [`Sandbox`]; neither knows the other. The
//! monitor drives whichever the container's `SandboxSpec` names.

use crate::spec::ProcessSpec;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use thiserror::Error;

pub use crate::phase::Trace;

/// What a finished sandbox cost, recorded by the monitor.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    /// Start-up steps and their durations, in order (milliseconds).
    #[serde(deserialize_with = "crate::phase::deserialize_timings")]
    pub phases: Vec<(crate::phase::Phase, f64)>,
    /// CPU time of the monitor process (for vm: includes the vCPU threads).
    pub monitor_cpu_ms: f64,
    /// Peak RSS of the monitor process (for vm: the VMM, guest pages it touched included).
    pub monitor_max_rss: u64,
    /// CPU time and peak RSS of the workload's processes (process backend).
    pub workload_cpu_ms: f64,
    pub workload_max_rss: u64,
    /// Guest RAM size and how much of it was resident at the end (vm).
    pub guest_ram: Option<u64>,
    pub guest_resident: Option<u64>,
}

/// The host side of a process's stdio.
#[derive(Debug)]
pub struct WorkloadIo {
    /// Write end of the process's stdin (None when stdin is not kept open).
    pub stdin: Option<File>,
    /// stdout, or the terminal (both streams) when a tty was allocated.
    pub stdout: File,
    /// stderr; None with a tty.
    pub stderr: Option<File>,
}

/// How a workload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Docker's convention: the exit status, or 128 + signal number.
    pub code: i32,
    pub oom_killed: bool,
}

impl ExitInfo {
    /// From a raw wait status.
    pub fn from_wait_status(status: i32) -> ExitInfo {
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            255
        };
        ExitInfo {
            code,
            oom_killed: false,
        }
    }
}

/// One process listed by `top`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopRow {
    pub uid: u32,
    pub pid: i32,
    pub ppid: i32,
    pub stime: String,
    pub time: String,
    pub cmd: String,
}

/// Resource figures for `stats` and `compare`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SandboxStats {
    pub memory_bytes: u64,
    /// Peak memory of the workload (process: the cgroup's peak; vm: the VMM's RSS).
    #[serde(default)]
    pub memory_peak: u64,
    pub memory_limit: Option<u64>,
    pub cpu_usage_ns: u64,
    pub pids: u64,
}

#[derive(Debug, Error)]
pub enum SandboxError {
    /// The command could not be found (Docker exits 127).
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// The command exists but cannot be executed (Docker exits 126).
    #[error("exec: {0:?}: permission denied")]
    NotExecutable(String),
    #[error("container set-up failed at {step}")]
    Setup {
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup")]
    Cgroup(#[from] crate::process::cgroups::CgroupError),
    #[error("{0}")]
    Unsupported(String),
    #[error("the sandbox is not running")]
    NotRunning,
    #[error("I/O")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

impl SandboxError {
    /// The exit code `run` reports for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            SandboxError::NotFound(_) => 127,
            SandboxError::NotExecutable(_) => 126,
            _ => 125,
        }
    }
}

/// A second process in a running sandbox (`exec`).
pub trait ExecProcess: Send + Sync {
    fn take_io(&mut self) -> Option<WorkloadIo>;
    /// Block until it ends; returns Docker's exit code.
    fn wait(&self) -> Result<i32, SandboxError>;
    fn resize(&self, rows: u16, cols: u16);
}

/// A running sandbox.
pub trait Sandbox: Send + Sync {
    /// Host pid that represents the workload (process: its pid; vm: the VMM's pid).
    fn pid(&self) -> i32;
    /// Block until the workload ends.
    fn wait(&self) -> ExitInfo;
    /// Deliver a signal to the workload.
    fn signal(&self, sig: i32) -> Result<(), SandboxError>;
    /// Force the sandbox down now (SIGKILL / power off).
    fn kill(&self) -> Result<(), SandboxError>;
    fn pause(&self) -> Result<(), SandboxError>;
    fn resume(&self) -> Result<(), SandboxError>;
    fn resize(&self, rows: u16, cols: u16);
    fn exec(&self, p: &ProcessSpec) -> Result<Box<dyn ExecProcess>, SandboxError>;
    /// Write a tar of `path` (top entry named by its basename) to `out`.
    fn copy_out(&self, path: &str, out: &mut (dyn Write + Send)) -> Result<(), SandboxError>;
    /// Extract the tar on `input` to `path` (Docker's `cp` rules, see `archive`).
    fn copy_in(&self, path: &str, input: &mut (dyn Read + Send)) -> Result<(), SandboxError>;
    fn top(&self) -> Result<Vec<TopRow>, SandboxError>;
    fn stats(&self) -> Result<SandboxStats, SandboxError>;
    /// Release everything the sandbox holds on the host (after it ended).
    fn cleanup(&self);
    /// Guest RAM size and resident bytes (vm only).
    fn guest_memory(&self) -> Option<(u64, u64)> {
        None
    }
    /// Peak RSS of a helper process the sandbox runs beside the monitor (a microVM's
    /// VMM), to count with the monitor's own.
    fn helper_max_rss(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_maps_like_docker() {
        assert_eq!(ExitInfo::from_wait_status(3 << 8).code, 3);
        assert_eq!(ExitInfo::from_wait_status(libc::SIGKILL).code, 137);
        assert_eq!(SandboxError::NotFound("x".into()).exit_code(), 127);
        assert_eq!(SandboxError::NotExecutable("x".into()).exit_code(), 126);
    }
}
