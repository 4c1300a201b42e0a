//! `SandboxSpec`: what to run, shared by both backends.
//!
//! The engine builds one from the image config and the user's flags; the process
//! backend applies it with namespaces and cgroups, and the vm backend sends the very
//! same struct (serialized) to the guest agent. There is no second definition.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The isolation model a container runs under.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// OS-level: namespaces + cgroups, the host kernel is shared.
    #[default]
    Process,
    /// Hardware-level: a KVM microVM with its own kernel.
    Vm,
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isolation::Process => "process",
            Isolation::Vm => "vm",
        })
    }
}

impl FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "process" => Ok(Isolation::Process),
            "vm" => Ok(Isolation::Vm),
            other => Err(format!(
                "unknown isolation {other:?}: use \"process\" or \"vm\""
            )),
        }
    }
}

/// Network attachment of a sandbox.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Own network namespace with only `lo`, up.
    #[default]
    None,
    /// The host's network namespace (process) / no isolation of the network stack.
    Host,
    /// Own network namespace (process) or network stack (vm) with the interfaces in
    /// `SandboxSpec::interfaces`, each on a twinbox bridge network.
    Bridge,
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
            NetworkMode::Bridge => "bridge",
        })
    }
}

/// The identity the workload runs as, resolved to numbers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

/// Resource limits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Resources {
    /// Memory limit in bytes (process: cgroup; vm: guest RAM).
    pub memory: Option<u64>,
    /// CPU quota in CPUs (process: cfs quota; vm: vCPU count, rounded up).
    pub cpus: Option<f64>,
    /// Maximum number of tasks.
    pub pids_limit: Option<i64>,
    /// CPUs to run on, canonical list form (process: cgroup cpuset; vm: the VMM's
    /// threads, vCPUs included, pinned to them).
    #[serde(default)]
    pub cpuset_cpus: Option<String>,
}

/// One process to run in a sandbox: the workload itself or an `exec`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ProcessSpec {
    /// argv; `args[0]` is resolved against `PATH` in `env` when it has no slash.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    pub user: User,
    /// Allocate a pseudo-terminal.
    pub tty: bool,
    /// Keep stdin open and forward it.
    pub stdin: bool,
}

/// One network interface of a sandbox on a twinbox bridge network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// The twinbox network's name.
    pub network: String,
    /// Name inside the sandbox: eth0, eth1, …
    pub name: String,
    pub address: std::net::Ipv4Addr,
    pub prefix: u8,
    pub gateway: std::net::Ipv4Addr,
    pub mac: [u8; 6],
    /// The host side: a veth (process) or a TAP (vm) device on the network's bridge.
    pub host_device: String,
    /// Extra names other containers on this network resolve to this address.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// What a mount brings into the container.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A named (or anonymous) volume of twinbox's volume store.
    Volume,
    /// A fresh tmpfs.
    Tmpfs,
}

/// A filesystem mounted into the container (`-v`, `--mount`, `--tmpfs`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Mount {
    pub kind: MountKind,
    /// The volume's name (Volume), an absolute host path (Bind), empty (Tmpfs).
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
    /// Volume: made for this container alone (`-v /path`), removed with it by `rm -v`
    /// and `run --rm`.
    #[serde(default)]
    pub anonymous: bool,
    /// Volume: do not copy the image's files at `target` into an empty volume.
    #[serde(default)]
    pub nocopy: bool,
    /// Tmpfs: size in bytes, mode bits, and whether programs may run from it.
    #[serde(default)]
    pub tmpfs_size: Option<u64>,
    #[serde(default)]
    pub tmpfs_mode: Option<u32>,
    #[serde(default)]
    pub tmpfs_exec: bool,
}

/// The seccomp filter a container asks for (`--security-opt seccomp=…`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase", tag = "mode", content = "profile")]
pub enum Seccomp {
    /// Docker's default profile.
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// A profile in Docker's JSON format (its text, kept with the container).
    Custom(String),
}

/// A user-namespace mapping: container ids 0..size are host ids uid.. and gid...
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

/// How a container is confined beyond its namespaces: Docker's `--privileged`,
/// `--cap-add/--cap-drop`, `--security-opt` and `--read-only`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Security {
    /// Every capability, no seccomp, every device, /sys and /proc unmasked.
    #[serde(default)]
    pub privileged: bool,
    /// Canonical names (`CAP_NET_ADMIN`) or `ALL`.
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub seccomp: Seccomp,
    /// `systempaths=unconfined`: /proc and /sys paths Docker masks stay visible.
    #[serde(default)]
    pub unmask_system_paths: bool,
    /// The root filesystem is mounted read-only (volumes and tmpfs mounts stay writable).
    #[serde(default)]
    pub read_only: bool,
    /// `--userns remap`: the container's ids are these host ids (process containers).
    #[serde(default)]
    pub userns: Option<IdMap>,
}

/// Where twinbox's embedded DNS responder listens inside a sandbox (Docker's address).
pub const EMBEDDED_DNS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);

/// Everything a backend needs to start a container's workload.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SandboxSpec {
    pub process: ProcessSpec,
    pub hostname: String,
    pub network: NetworkMode,
    /// With `NetworkMode::Bridge`: the interfaces, the first one carrying the default
    /// route.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Names are resolved by twinbox's DNS responder at `EMBEDDED_DNS` (user networks).
    #[serde(default)]
    pub embedded_dns: bool,
    pub resources: Resources,
    pub isolation: Isolation,
    /// Volumes, bind mounts and tmpfs mounts, in the order given.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub security: Security,
}

impl ProcessSpec {
    /// The value of `PATH` in this process's environment, or the default Docker uses.
    pub fn path_var(&self) -> &str {
        self.env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
    }
}

/// Most vCPUs a microVM can have (APIC ids the VMM's MP table describes).
pub const MAX_VCPUS: u32 = crate::vmm::boot::mptable::MAX_CPUS as u32;

/// Docker's default `PATH` for containers whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Merge `KEY=VALUE` lists: later entries replace earlier ones with the same key,
/// order of first appearance kept.
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(base.len() + overrides.len());
    for e in base.iter().chain(overrides) {
        let key = e.split('=').next().unwrap_or(e);
        if let Some(slot) = out
            .iter_mut()
            .find(|x| x.split('=').next().unwrap_or(x) == key)
        {
            *slot = e.clone();
        } else {
            out.push(e.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_keep_order() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let over = vec!["A=2".to_string(), "B=3".to_string()];
        assert_eq!(merge_env(&base, &over), vec!["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn path_defaults_like_docker() {
        let p = ProcessSpec::default();
        assert_eq!(p.path_var(), DEFAULT_PATH);
        let p = ProcessSpec {
            env: vec!["PATH=/x".into()],
            ..Default::default()
        };
        assert_eq!(p.path_var(), "/x");
    }

    #[test]
    fn isolation_parses() {
        assert_eq!("vm".parse::<Isolation>().unwrap(), Isolation::Vm);
        assert!("kvm".parse::<Isolation>().is_err());
    }
}
