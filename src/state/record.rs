//! What twinbox remembers about one container.

use crate::spec::SandboxSpec;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Lifecycle status, Docker's names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Exited,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exited => "exited",
        })
    }
}

/// The runtime part of a record, written by the monitor.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ContainerState {
    pub status: Status,
    /// Host pid of the workload (process) or of the VMM's vCPU owner (vm); 0 when not running.
    pub pid: i32,
    /// Pid of the container's monitor and its start time (to survive pid reuse).
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    /// Why the container ended abnormally (e.g. its monitor was killed).
    pub error: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What the last run cost (start-up phases, CPU, memory), written at its exit.
    #[serde(default)]
    pub metrics: Option<crate::sandbox::Metrics>,
    /// Host ports held for the running container (what `port` lists).
    #[serde(default)]
    pub ports: Vec<crate::network::ports::PortMapping>,
}

impl Default for ContainerState {
    fn default() -> Self {
        ContainerState {
            status: Status::Created,
            pid: 0,
            monitor_pid: 0,
            monitor_start: 0,
            exit_code: None,
            oom_killed: false,
            error: String::new(),
            started_at: None,
            finished_at: None,
            metrics: None,
            ports: Vec::new(),
        }
    }
}

/// The files a microVM container boots from (vm isolation only).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct VmFiles {
    pub kernel: std::path::PathBuf,
    pub initrd: std::path::PathBuf,
}

/// How a container's output is kept (`--log-driver`, `--log-opt`); see
/// `monitor::logs`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// "json-file" or "local" (both kept in twinbox's compact format), or "none".
    pub driver: String,
    /// Rotate when the current file would pass this many bytes.
    pub max_size: u64,
    /// Files kept, the current one included.
    pub max_file: u32,
}

impl Default for LogConfig {
    /// Docker's `local` driver defaults: 20 MB per file, 5 files.
    fn default() -> LogConfig {
        LogConfig {
            driver: "json-file".into(),
            max_size: 20 * 1000 * 1000,
            max_file: 5,
        }
    }
}

/// One container.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub created: DateTime<Utc>,
    /// The image reference the user gave, e.g. `busybox`.
    pub image: String,
    /// The image id (sha256 of its config).
    pub image_id: String,
    /// Unpacked layer directories, lowest first.
    pub layers: Vec<String>,
    /// The image's Entrypoint and Cmd after the user's overrides (for display).
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// The user string as given (`-u`), for inspect.
    pub user: String,
    pub spec: SandboxSpec,
    pub auto_remove: bool,
    pub restart_count: u32,
    pub state: ContainerState,
    #[serde(default)]
    pub vm: Option<VmFiles>,
    /// Ports to publish at each start (`-p`, `-P`); host port 0 = any free one.
    #[serde(default)]
    pub ports: Vec<crate::network::ports::PortMapping>,
    /// `--link NAME:ALIAS`: (container, alias), written into /etc/hosts at start.
    #[serde(default)]
    pub links: Vec<(String, String)>,
    #[serde(default)]
    pub log_config: LogConfig,
}

impl ContainerRecord {
    /// A stopped busybox record with nothing else to it, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.to_string(),
            name: name.to_string(),
            created: chrono::Utc::now(),
            image: "busybox".into(),
            image_id: "sha256:x".into(),
            layers: vec![],
            entrypoint: vec![],
            cmd: vec!["sh".into()],
            user: String::new(),
            spec: crate::spec::SandboxSpec::default(),
            auto_remove: false,
            restart_count: 0,
            state: ContainerState::default(),
            vm: None,
            ports: vec![],
            links: vec![],
            log_config: Default::default(),
        }
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// The command line as `ps` shows it.
    pub fn command_line(&self) -> String {
        self.spec.process.args.join(" ")
    }

    pub fn is_active(&self) -> bool {
        matches!(self.state.status, Status::Running | Status::Paused)
    }
}
