//! Reading containers: lookup, listing with reconciliation, inspect, info.

use super::{Engine, EngineError};
use crate::state::{ContainerRecord, Status};
use serde::Serialize;
use serde_json::json;

/// One row of `ps`, with Docker's field names (used by `--format`).
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    #[serde(rename = "ID")]
    pub id: String,
    pub image: String,
    pub command: String,
    pub created_at: String,
    pub running_for: String,
    pub status: String,
    pub state: String,
    pub names: String,
    pub isolation: String,
    pub ports: String,
}

/// Human "3 seconds", "2 minutes", … like Docker's.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// Docker's STATUS column.
pub fn status_text(rec: &ContainerRecord, now: chrono::DateTime<chrono::Utc>) -> String {
    match rec.state.status {
        Status::Created => "Created".into(),
        Status::Running | Status::Paused => {
            let since = rec.state.started_at.unwrap_or(rec.created);
            let mut s = format!("Up {}", human_duration((now - since).num_seconds()));
            if rec.state.status == Status::Paused {
                s.push_str(" (Paused)");
            }
            s
        }
        Status::Exited => {
            let at = rec.state.finished_at.unwrap_or(rec.created);
            format!(
                "Exited ({}) {} ago",
                rec.state.exit_code.unwrap_or(0),
                human_duration((now - at).num_seconds())
            )
        }
    }
}

/// Facts for `info`.
#[derive(Serialize, Debug)]
pub struct Info {
    pub containers: usize,
    pub running: usize,
    pub paused: usize,
    pub stopped: usize,
    pub images: usize,
    pub root: String,
    pub run_root: String,
    pub cgroup_version: String,
    pub kernel: String,
    pub kvm: String,
    pub default_isolation: String,
}

/// inspect's `HostConfig`: limits, network mode, security and logging as set.
fn host_config(r: &ContainerRecord) -> serde_json::Value {
    let sec = &r.spec.security;
    let hidden = !sec.privileged && !sec.unmask_system_paths;
    json!({
        "NetworkMode": match r.spec.interfaces.first() {
            Some(i) if r.spec.network == crate::spec::NetworkMode::Bridge => i.network.clone(),
            _ => r.spec.network.to_string(),
        },
        "PortBindings": port_bindings(&r.ports),
        "Links": r.links.iter().map(|(n, a)| format!("/{n}:/{}/{a}", r.name)).collect::<Vec<_>>(),
        "AutoRemove": r.auto_remove,
        "Memory": r.spec.resources.memory.unwrap_or(0),
        "NanoCpus": r.spec.resources.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
        "PidsLimit": r.spec.resources.pids_limit,
        "CpusetCpus": r.spec.resources.cpuset_cpus.clone().unwrap_or_default(),
        "Isolation": r.spec.isolation.to_string(),
        "CapAdd": sec.cap_add,
        "CapDrop": sec.cap_drop,
        "Privileged": sec.privileged,
        "ReadonlyRootfs": sec.read_only,
        "SecurityOpt": security_opt(sec),
        "UsernsMode": if sec.userns.is_some() { "remap" } else { "" },
        "LogConfig": {
            "Type": r.log_config.driver,
            "Config": if r.log_config.keeps_logs() {
                json!({"max-size": r.log_config.max_size.to_string(), "max-file": r.log_config.max_file.to_string()})
            } else {
                json!({})
            },
        },
        "ReadonlyPaths": if hidden { json!(crate::init::rootfs::READONLY) } else { json!([]) },
        "MaskedPaths": if hidden { json!(crate::init::rootfs::MASKED) } else { json!([]) },
    })
}

impl Engine {
    /// If the record says running but its monitor is gone, record the truth.
    pub fn reconcile(&self, rec: ContainerRecord) -> ContainerRecord {
        if rec.state.status == Status::Created && self.store.abandoned(&rec.id) {
            // Its creator was killed before it was whole (or before `run` started it).
            self.discard(&rec);
            return rec;
        }
        if !rec.is_active()
            || crate::util::proc::alive(rec.state.monitor_pid, rec.state.monitor_start)
        {
            return rec;
        }
        crate::monitor::reap_dead(&self.paths, &self.store, &rec.id).unwrap_or(rec)
    }

    /// Resolve a name/id/prefix and load the (reconciled) record.
    pub fn get(&self, reference: &str) -> Result<ContainerRecord, EngineError> {
        let id = self.store.resolve(reference)?;
        let rec = self.reconcile(self.store.load(&id)?);
        if !self.paths.container_dir(&id).exists() {
            return Err(crate::state::StateError::NotFound(reference.to_string()).into());
        }
        Ok(rec)
    }

    /// Containers whose record cannot be read (`ps -a` lists them as dead).
    pub fn damaged(&self) -> Result<Vec<crate::state::Damaged>, EngineError> {
        Ok(self.store.scan()?.1)
    }

    /// Remove what a half-made container left: record, leases, anonymous volumes,
    /// runtime files.
    fn discard(&self, rec: &ContainerRecord) {
        self.teardown(rec, &crate::teardown::Occasion::Abandoned);
    }

    /// [`Engine::teardown`] of a container whose record cannot be read.
    pub(crate) fn teardown_damaged(&self, id: &str) -> Vec<(crate::teardown::Step, String)> {
        let mut host = crate::teardown::Resources {
            paths: &self.paths,
            store: &self.store,
            id,
            rec: None,
        };
        crate::teardown::run(&mut host, &crate::teardown::Occasion::Damaged)
    }

    /// Take a container apart for `occasion` (see [`crate::teardown`]); the steps that
    /// failed.
    pub(crate) fn teardown(
        &self,
        rec: &ContainerRecord,
        occasion: &crate::teardown::Occasion,
    ) -> Vec<(crate::teardown::Step, String)> {
        let mut host = crate::teardown::Resources {
            paths: &self.paths,
            store: &self.store,
            id: &rec.id,
            rec: Some(rec),
        };
        crate::teardown::run(&mut host, occasion)
    }

    pub fn list(&self, all: bool) -> Result<Vec<ContainerRecord>, EngineError> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .map(|r| self.reconcile(r))
            .filter(|r| self.store.load(&r.id).is_ok())
            .filter(|r| all || r.is_active())
            .collect())
    }

    pub fn summary(&self, rec: &ContainerRecord) -> ContainerSummary {
        let now = chrono::Utc::now();
        let mut command = rec.command_line();
        if command.chars().count() > 20 {
            command = command.chars().take(19).collect::<String>() + "…";
        }
        ContainerSummary {
            id: rec.short_id().to_string(),
            image: rec.image.clone(),
            command: format!("\"{command}\""),
            created_at: rec.created.format("%Y-%m-%d %H:%M:%S %z UTC").to_string(),
            running_for: format!("{} ago", human_duration((now - rec.created).num_seconds())),
            status: status_text(rec, now),
            state: rec.state.status.to_string(),
            names: rec.name.clone(),
            isolation: rec.spec.isolation.to_string(),
            ports: rec
                .state
                .ports
                .iter()
                .filter(|_| rec.is_active())
                .map(|m| {
                    format!(
                        "{}:{}->{}/{}",
                        m.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                        m.host_port,
                        m.container_port,
                        m.proto
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// inspect's `Mounts`: volumes with their directory and name, binds, tmpfs.
    fn mounts_json(&self, r: &ContainerRecord) -> Vec<serde_json::Value> {
        r.spec.mounts.iter().map(|m| {
            let source = match m.kind {
                crate::spec::MountKind::Volume => crate::volume::VolumeStore::data_dir_in(&self.paths.root, &m.source).display().to_string(),
                crate::spec::MountKind::Bind => m.source.clone(),
                crate::spec::MountKind::Tmpfs => String::new(),
            };
            let mut j = serde_json::json!({
                "Type": format!("{:?}", m.kind).to_lowercase(),
                "Source": source,
                "Destination": m.target,
                "Mode": if m.readonly { "ro" } else { "" },
                "RW": !m.readonly,
                "Propagation": if m.kind == crate::spec::MountKind::Bind { "rprivate" } else { "" },
            });
            if m.kind == crate::spec::MountKind::Volume {
                j["Name"] = serde_json::json!(m.source);
                j["Driver"] = serde_json::json!("local");
            }
            j
        }).collect()
    }

    /// `inspect`: Docker's field names where they exist.
    pub fn inspect(&self, reference: &str) -> Result<serde_json::Value, EngineError> {
        let r = self.get(reference)?;
        let s = &r.state;
        let p = &r.spec.process;
        let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
        };
        Ok(json!({
            "Id": r.id,
            "Created": r.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "Path": p.args.first().cloned().unwrap_or_default(),
            "Args": p.args.iter().skip(1).collect::<Vec<_>>(),
            "State": {
                "Status": s.status.to_string(),
                "Running": s.status == Status::Running || s.status == Status::Paused,
                "Paused": s.status == Status::Paused,
                "Restarting": false,
                "OOMKilled": s.oom_killed,
                "Dead": false,
                "Pid": s.pid,
                "MonitorPid": s.monitor_pid,
                "ExitCode": s.exit_code.unwrap_or(0),
                "Error": s.error,
                "StartedAt": ts(s.started_at),
                "FinishedAt": ts(s.finished_at),
            },
            "Image": r.image_id,
            "LogPath": self.paths.log_path(&r.id).display().to_string(),
            "Name": format!("/{}", r.name),
            "RestartCount": r.restart_count,
            "Driver": "overlay",
            "Isolation": r.spec.isolation.to_string(),
            "HostConfig": host_config(&r),
            "Mounts": self.mounts_json(&r),
            "GraphDriver": {
                "Name": "overlay",
                "Data": {
                    "LowerDir": r.layers.iter().rev().cloned().collect::<Vec<_>>().join(":"),
                    "UpperDir": self.paths.container_dir(&r.id).join("upper").display().to_string(),
                    "WorkDir": self.paths.container_dir(&r.id).join("work").display().to_string(),
                }
            },
            "Config": {
                "Hostname": r.spec.hostname,
                "User": r.user,
                "Env": p.env,
                "Cmd": r.cmd,
                "Entrypoint": if r.entrypoint.is_empty() { serde_json::Value::Null } else { json!(r.entrypoint) },
                "Image": r.image,
                "WorkingDir": p.cwd,
                "Tty": p.tty,
                "OpenStdin": p.stdin,
                "AttachStdin": p.stdin,
            },
            "NetworkSettings": network_settings(&r),
        }))
    }

    pub fn info(&self) -> Result<Info, EngineError> {
        let all = self.list(true)?;
        let c = |s: Status| all.iter().filter(|r| r.state.status == s).count();
        let cgroup_version = std::fs::read_to_string("/proc/self/mounts")
            .ok()
            .and_then(|m| crate::process::cgroups::probe_layout(&m))
            .map(|l| match l {
                crate::process::cgroups::Layout::V1(_) => "1".to_string(),
                crate::process::cgroups::Layout::V2(_) => "2".to_string(),
            })
            .unwrap_or_else(|| "none".into());
        let kvm = if std::path::Path::new("/sys/module/kvm_pvm").exists() {
            "present, PVM-based (cannot run a standard guest kernel: use `twinbox lab`)".to_string()
        } else if std::path::Path::new("/dev/kvm").exists() {
            "present".to_string()
        } else {
            "absent".to_string()
        };
        Ok(Info {
            containers: all.len(),
            running: c(Status::Running),
            paused: c(Status::Paused),
            stopped: c(Status::Exited) + c(Status::Created),
            images: self.images.list()?.len(),
            root: self.paths.root.display().to_string(),
            run_root: self.paths.run.display().to_string(),
            cgroup_version,
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            kvm,
            default_isolation: "process".into(),
        })
    }
}

/// Docker's `HostConfig.SecurityOpt` for what a container asked.
fn security_opt(sec: &crate::spec::Security) -> Vec<String> {
    let mut v = Vec::new();
    match &sec.seccomp {
        crate::spec::Seccomp::Default => {}
        crate::spec::Seccomp::Unconfined => v.push("seccomp=unconfined".to_string()),
        // Docker keeps the profile's text here too.
        crate::spec::Seccomp::Custom(text) => v.push(format!("seccomp={text}")),
    }
    if sec.no_new_privileges {
        v.push("no-new-privileges".into());
    }
    if sec.unmask_system_paths {
        v.push("systempaths=unconfined".into());
    }
    v
}

/// Docker's `HostConfig.PortBindings` shape.
fn port_bindings(maps: &[crate::network::ports::PortMapping]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for p in maps {
        let e = m
            .entry(format!("{}/{}", p.container_port, p.proto))
            .or_insert_with(|| json!([]));
        if let Some(a) = e.as_array_mut() {
            a.push(json!({
                "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                "HostPort": if p.host_port == 0 { String::new() } else { p.host_port.to_string() },
            }));
        }
    }
    serde_json::Value::Object(m)
}

/// Docker's `NetworkSettings`: per network the address, gateway, MAC and aliases; the
/// ports held while running.
fn network_settings(r: &ContainerRecord) -> serde_json::Value {
    let mut nets = serde_json::Map::new();
    if r.spec.network != crate::spec::NetworkMode::Bridge {
        nets.insert(r.spec.network.to_string(), json!({}));
    }
    for i in &r.spec.interfaces {
        nets.insert(
            i.network.clone(),
            json!({
                "IPAddress": i.address.to_string(),
                "IPPrefixLen": i.prefix,
                "Gateway": i.gateway.to_string(),
                "MacAddress": crate::network::ipam::mac_string(i.mac),
                "Aliases": i.aliases,
                "InterfaceName": i.name,
                "HostDevice": i.host_device,
            }),
        );
    }
    let first = r.spec.interfaces.first();
    json!({
        "Networks": nets,
        "IPAddress": first.map(|i| i.address.to_string()).unwrap_or_default(),
        "Gateway": first.map(|i| i.gateway.to_string()).unwrap_or_default(),
        "MacAddress": first.map(|i| crate::network::ipam::mac_string(i.mac)).unwrap_or_default(),
        "Ports": port_bindings(if r.is_active() { &r.state.ports } else { &[] }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3 * 86_400), "3 days");
    }
}
