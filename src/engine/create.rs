//! `create`: image config + the user's flags -> one SandboxSpec and a container record.

use super::{io_err, user, Engine, EngineError};
use crate::init::caps;
use crate::network::DEFAULT_NETWORK;
use crate::spec::{
    merge_env, Isolation, NetworkMode, ProcessSpec, Resources, SandboxSpec, Seccomp, Security,
};
use crate::state::{ContainerRecord, ContainerState};
use crate::util::ids;
use std::path::PathBuf;

/// Everything `create`/`run` accept.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub image: String,
    pub cmd: Vec<String>,
    pub entrypoint: Option<String>,
    pub name: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    pub stdin: bool,
    pub auto_remove: bool,
    pub memory: Option<String>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub network: Option<String>,
    pub network_aliases: Vec<String>,
    pub ip: Option<String>,
    /// `-p` values.
    pub publish: Vec<String>,
    /// `-P`: publish every port the image exposes.
    pub publish_all: bool,
    /// `--link NAME[:ALIAS]`.
    pub links: Vec<String>,
    pub isolation: Option<Isolation>,
    /// `-v`, `--mount`, `--tmpfs` values.
    pub volumes: Vec<String>,
    pub mounts: Vec<String>,
    pub tmpfs: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// `--security-opt` values.
    pub security_opt: Vec<String>,
    pub read_only: bool,
    pub log_driver: Option<String>,
    pub log_opts: Vec<String>,
    /// `--userns host|remap`.
    pub userns: Option<String>,
}

/// Where `--network` puts a container.
#[derive(Clone)]
enum NetChoice {
    None,
    Host,
    Bridge(String),
}

/// What `create` checked of the user's flags before touching any store.
#[derive(Clone)]
struct Checked {
    isolation: Isolation,
    memory: Option<u64>,
    cpuset_cpus: Option<String>,
    net: NetPlan,
    mounts: Vec<crate::spec::Mount>,
    security: Security,
    log_config: crate::state::LogConfig,
    env_from_files: Vec<String>,
}

/// The container's network as its flags ask for it.
#[derive(Clone)]
struct NetPlan {
    choice: NetChoice,
    network: NetworkMode,
    ports: Vec<crate::network::ports::PortMapping>,
    user_network: bool,
    fixed_ip: Option<std::net::Ipv4Addr>,
    links: Vec<(String, String)>,
}

/// What the image and the flags make of the workload.
struct Resolved {
    image_id: String,
    layers: Vec<PathBuf>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    args: Vec<String>,
    user_str: String,
    user: crate::spec::User,
    env: Vec<String>,
    cwd: String,
    exposed: Vec<String>,
}

/// `--memory`, `--cpus`, `--cpuset-cpus` within what this host and the model allow.
fn check_limits(
    o: &CreateOptions,
    isolation: Isolation,
) -> Result<(Option<u64>, Option<String>), EngineError> {
    let memory = o
        .memory
        .as_deref()
        .map(crate::util::size::parse_size)
        .transpose()
        .map_err(|e| EngineError::Invalid(format!("invalid memory limit: {e}")))?;
    if let Some(m) = memory {
        if m < 6 * 1024 * 1024 {
            return Err(EngineError::Invalid(
                "minimum memory limit allowed is 6MB".into(),
            ));
        }
    }
    if let Some(m) = memory {
        // No microVM can have more RAM than the host; a process container's limit
        // above the host's memory and swap would limit nothing (a typo, most
        // likely: 99999999g).
        let (ram, swap) = host_memory();
        let most = if isolation == Isolation::Vm {
            ram
        } else {
            ram.saturating_add(swap)
        };
        if m > most {
            return Err(EngineError::Invalid(format!(
                "invalid memory limit {}: more than this host's {} of memory{}",
                o.memory.as_deref().unwrap_or_default(),
                crate::util::size::human(most),
                if isolation == Isolation::Vm {
                    ""
                } else {
                    " and swap"
                }
            )));
        }
    }
    if let Some(c) = o.cpus {
        // A process container's quota cannot exceed the host's CPUs (Docker's
        // rule); a microVM's --cpus is its vCPU count, which may exceed them, up
        // to what its VMM describes to the guest.
        let (max, what) = if isolation == Isolation::Vm {
            (
                crate::spec::MAX_VCPUS as f64,
                "vCPUs a microVM can have".to_string(),
            )
        } else {
            let host = std::thread::available_parallelism().map_or(1, |n| n.get());
            (host as f64, format!("CPUs available ({host})"))
        };
        if !(c.is_finite() && (0.01..=max).contains(&c)) {
            return Err(EngineError::Invalid(format!(
                "invalid --cpus {c}: the range is 0.01 to {max:.2}, the {what}"
            )));
        }
    }
    let cpuset_cpus = o
        .cpuset_cpus
        .as_deref()
        .map(crate::util::cpuset::validate)
        .transpose()
        .map_err(EngineError::Invalid)?;
    Ok((memory, cpuset_cpus))
}

/// `--name` and `-w`.
fn check_names(o: &CreateOptions) -> Result<(), EngineError> {
    if let Some(n) = &o.name {
        if !ids::valid_name(n) {
            return Err(EngineError::Invalid(format!(
                "invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
    }
    if let Some(w) = &o.workdir {
        if !w.starts_with('/') {
            return Err(EngineError::Invalid(format!(
                "the working directory {w:?} is invalid: it needs to be an absolute path"
            )));
        }
    }
    Ok(())
}

/// `-e KEY` takes KEY from our environment; `-e KEY=V` is literal. A variable needs a
/// name: `=V` and an empty entry are refused, as Docker does.
fn expand_env(items: &[String]) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    for e in items {
        let name = e.split('=').next().unwrap_or("");
        if name.is_empty() || name.contains('\0') || e.contains('\0') {
            return Err(EngineError::Invalid(format!(
                "invalid environment variable {e:?}: it needs a name (KEY=VALUE)"
            )));
        }
        if e.contains('=') {
            out.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            out.push(format!("{e}={v}"));
        }
    }
    Ok(out)
}

/// `exec -e` values, checked like `run -e`.
pub(crate) fn checked_env(items: &[String]) -> Result<Vec<String>, EngineError> {
    expand_env(items)
}

/// A hostname the kernel and resolvers take: RFC 1123 labels, at most 63 characters
/// (HOST_NAME_MAX is 64 with its NUL).
pub(crate) fn check_hostname(h: &str) -> Result<(), EngineError> {
    let label = |l: &str| {
        !l.is_empty()
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if h.is_empty() || h.len() > 63 || !h.split('.').all(label) {
        return Err(EngineError::Invalid(format!(
            "invalid hostname {h:?}: letters, digits and '-' in dot-separated labels, at most 63 characters"
        )));
    }
    Ok(())
}

/// Memory and swap of this host (MemTotal, SwapTotal), in bytes (unknown: no limit).
fn host_memory() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |k: &str| -> Option<u64> {
        let kb: u64 = s
            .lines()
            .find_map(|l| l.strip_prefix(k))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    };
    (
        field("MemTotal:").unwrap_or(u64::MAX),
        field("SwapTotal:").unwrap_or(0),
    )
}

fn read_env_file(path: &PathBuf) -> Result<Vec<String>, EngineError> {
    let s = std::fs::read_to_string(path)
        .map_err(io_err(format!("cannot read env file {}", path.display())))?;
    expand_env(
        &s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect::<Vec<_>>(),
    )
}

/// The default bridge's resolv.conf: the host's, without loopback nameservers (they
/// are unreachable from the container); Docker's public fallback if none is left.
fn bridge_resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for l in host.lines() {
        let mut w = l.split_whitespace();
        match (w.next(), w.next()) {
            (Some("nameserver"), Some(a)) => {
                if a.starts_with("127.") || a == "::1" {
                    continue;
                }
                servers += 1;
                out += l;
                out.push('\n');
            }
            (Some("search" | "options" | "domain"), _) => {
                out += l;
                out.push('\n');
            }
            _ => {}
        }
    }
    if servers == 0 {
        out += "nameserver 8.8.8.8\nnameserver 8.8.4.4\n";
    }
    out
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// `--userns`, and Docker's `userns-remap` setting: a remapped container's ids.
fn userns_option(o: &CreateOptions) -> Result<Option<crate::spec::IdMap>, EngineError> {
    let remap = crate::settings::load()
        .map_err(|e| EngineError::Invalid(e.to_string()))?
        .userns_remap;
    let vm = o.isolation == Some(Isolation::Vm);
    let spec = match o.userns.as_deref() {
        Some("host") => return Ok(None),
        Some("remap") if vm => {
            return Err(EngineError::Invalid(
                "--userns remap is for process containers: a microVM's root is confined by its VM, not by the host's user namespaces".into(),
            ))
        }
        Some("remap") => remap.unwrap_or_else(|| "default".into()),
        Some(other) => {
            return Err(EngineError::Invalid(format!(
                "invalid --userns {other:?}: use host or remap"
            )))
        }
        // The setting remaps process containers; a microVM is its own boundary.
        None if vm => return Ok(None),
        None => match remap {
            Some(r) => r,
            None => return Ok(None),
        },
    };
    if o.privileged {
        return Err(EngineError::Invalid(
            "--privileged cannot be used in a user namespace: add --userns host".into(),
        ));
    }
    if o.network.as_deref() == Some("host") {
        return Err(EngineError::Invalid(
            "--network host cannot be used in a user namespace: add --userns host".into(),
        ));
    }
    crate::security::subid::lookup(&spec)
        .map(Some)
        .map_err(EngineError::Invalid)
}

/// `--privileged`, `--cap-add/--cap-drop`, `--security-opt`, `--read-only`, checked.
fn security_options(o: &CreateOptions) -> Result<Security, EngineError> {
    let caps = |v: &[String]| -> Result<Vec<String>, EngineError> {
        v.iter()
            .map(|c| caps::canonical(c).map_err(EngineError::Invalid))
            .collect()
    };
    let mut sec = Security {
        userns: userns_option(o)?,
        privileged: o.privileged,
        cap_add: caps(&o.cap_add)?,
        cap_drop: caps(&o.cap_drop)?,
        read_only: o.read_only,
        ..Default::default()
    };
    for opt in &o.security_opt {
        // Docker accepts both KEY=VALUE and the older KEY:VALUE.
        let (k, v) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .unwrap_or((opt.as_str(), ""));
        let bad = || EngineError::Invalid(format!("invalid --security-opt {opt:?}"));
        match (k, v) {
            ("no-new-privileges", "" | "true") => sec.no_new_privileges = true,
            ("no-new-privileges", "false") => sec.no_new_privileges = false,
            ("seccomp", "unconfined") => sec.seccomp = Seccomp::Unconfined,
            ("seccomp", "") | ("no-new-privileges", _) => return Err(bad()),
            ("seccomp", path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(io_err(format!("cannot read the seccomp profile {path}")))?;
                crate::security::seccomp::parse(&text).map_err(|e| {
                    EngineError::Invalid(format!("{path}: {}", crate::util::error_chain(&e)))
                })?;
                sec.seccomp = Seccomp::Custom(text);
            }
            ("systempaths", "unconfined") => sec.unmask_system_paths = true,
            // No SELinux or AppArmor here: turning them off is what there already is.
            ("label", "disable") | ("apparmor", "unconfined") => {}
            ("label" | "apparmor", _) => {
                return Err(EngineError::Invalid(format!(
                    "--security-opt {opt}: twinbox has no SELinux or AppArmor support (only {k}={} is accepted)",
                    if k == "label" { "disable" } else { "unconfined" }
                )))
            }
            _ => return Err(bad()),
        }
    }
    Ok(sec)
}

impl Engine {
    /// Create a container (state `created`). On error nothing is left behind, and if
    /// this process is killed midway, what it made is discarded by the next command
    /// that looks (see `state::Creating`).
    pub fn create(&self, o: &CreateOptions) -> Result<ContainerRecord, EngineError> {
        let (rec, creating) = self.create_guarded(o)?;
        creating.finish(&self.paths.container_dir(&rec.id));
        Ok(rec)
    }

    /// `create`, still holding the creation lock (`run` keeps it until the monitor
    /// has started the container): validate → resolve → persist → provision.
    pub(crate) fn create_guarded(
        &self,
        o: &CreateOptions,
    ) -> Result<(ContainerRecord, crate::state::Creating), EngineError> {
        let checked = self.validate(o)?;
        let resolved = self.resolve(o, &checked)?;
        let (rec, made_volumes, creating) = self.persist(o, checked.clone(), resolved)?;
        match self.provision(o, &checked, rec.clone()) {
            Ok(r) => Ok((r, creating)),
            Err(e) => {
                let _ = self.store.remove(&rec.id);
                if let NetChoice::Bridge(n) = &checked.net.choice {
                    self.release_lease(n, &rec.id);
                }
                self.unprepare_mounts(&made_volumes, &rec.id);
                Err(e)
            }
        }
    }

    /// Every check of the user's flags that needs no store written (cheap ones first).
    fn validate(&self, o: &CreateOptions) -> Result<Checked, EngineError> {
        let isolation = o.isolation.unwrap_or_default();
        let (memory, cpuset_cpus) = check_limits(o, isolation)?;
        if let Some(h) = &o.hostname {
            check_hostname(h)?;
        }
        let net = self.check_network(o, isolation)?;
        check_names(o)?;
        let mounts = crate::volume::parse::parse_all(&o.volumes, &o.mounts, &o.tmpfs)
            .map_err(EngineError::Invalid)?;
        if isolation == Isolation::Vm
            && crate::volume::vm::shared_mounts(&mounts).count() > crate::volume::vm::MAX_SHARES
        {
            return Err(EngineError::Invalid(format!(
                "a microVM takes at most {} volumes and bind mounts",
                crate::volume::vm::MAX_SHARES
            )));
        }
        let security = security_options(o)?;
        let log_config = crate::state::LogConfig::parse(o.log_driver.as_deref(), &o.log_opts)
            .map_err(EngineError::Invalid)?;
        let mut env_from_files = Vec::new();
        for f in &o.env_files {
            env_from_files.extend(read_env_file(f)?);
        }
        Ok(Checked {
            isolation,
            memory,
            cpuset_cpus,
            net,
            mounts,
            security,
            log_config,
            env_from_files,
        })
    }

    /// `--network`, `-p`, `--ip`, `--network-alias`, `--link`.
    fn check_network(
        &self,
        o: &CreateOptions,
        isolation: Isolation,
    ) -> Result<NetPlan, EngineError> {
        let choice = match o.network.as_deref() {
            None | Some("") | Some("default") => NetChoice::Bridge(DEFAULT_NETWORK.into()),
            Some("none") => NetChoice::None,
            Some("host") => NetChoice::Host,
            Some(n) => NetChoice::Bridge(n.to_string()),
        };
        let network = match choice {
            NetChoice::None => NetworkMode::None,
            NetChoice::Host => NetworkMode::Host,
            NetChoice::Bridge(_) => NetworkMode::Bridge,
        };
        if isolation == Isolation::Vm && network == NetworkMode::Host {
            return Err(EngineError::Invalid(
                "--network host cannot be used with --isolation vm: a microVM has its own network stack".into(),
            ));
        }
        let mut ports = Vec::new();
        for p in &o.publish {
            ports.extend(crate::network::ports::parse(p).map_err(EngineError::Invalid)?);
        }
        let user_network = match &choice {
            NetChoice::Bridge(n) if n != DEFAULT_NETWORK => {
                self.networks()?.find(n)?;
                true
            }
            _ => false,
        };
        if network != NetworkMode::Bridge
            && (!ports.is_empty() || o.publish_all || !o.links.is_empty())
        {
            return Err(EngineError::Invalid(format!(
                "ports and links need a bridge network, not --network {network}"
            )));
        }
        if !user_network && (!o.network_aliases.is_empty() || o.ip.is_some()) {
            return Err(EngineError::Invalid(
                "--network-alias and --ip are supported only on user-defined networks".into(),
            ));
        }
        let fixed_ip =
            o.ip.as_deref()
                .map(|i| {
                    i.parse::<std::net::Ipv4Addr>()
                        .map_err(|_| EngineError::Invalid(format!("invalid IPv4 address {i:?}")))
                })
                .transpose()?;
        let mut links = Vec::new();
        for l in &o.links {
            let (n, a) = l.split_once(':').unwrap_or((l, l));
            self.store.resolve(n).map_err(|_| {
                EngineError::Invalid(format!("cannot link to {n}: no such container"))
            })?;
            links.push((n.to_string(), a.to_string()));
        }
        Ok(NetPlan {
            choice,
            network,
            ports,
            user_network,
            fixed_ip,
            links,
        })
    }

    /// What the image and the flags make of the workload: layers, command, user,
    /// environment, working directory.
    fn resolve(&self, o: &CreateOptions, c: &Checked) -> Result<Resolved, EngineError> {
        let t_image = std::time::Instant::now();
        let image = self.images.find_or_builtin(&o.image).map_err(|e| match e {
            crate::image::ImageError::NotFound(r) => EngineError::Invalid(format!(
                "no such image: {r} (only the built-in busybox is available until it is pulled or loaded)"
            )),
            other => other.into(),
        })?;
        let layers = self.images.layer_dirs(&image)?;
        self.phase(crate::phase::Phase::Image, t_image.elapsed());
        let cfg = image.config.config().clone().unwrap_or_default();

        let (entrypoint, cmd) = match &o.entrypoint {
            Some(e) if e.is_empty() => (vec![], o.cmd.clone()),
            Some(e) => (vec![e.clone()], o.cmd.clone()),
            None => (
                cfg.entrypoint().clone().unwrap_or_default(),
                if o.cmd.is_empty() {
                    cfg.cmd().clone().unwrap_or_default()
                } else {
                    o.cmd.clone()
                },
            ),
        };
        let args: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
        if args.is_empty() {
            return Err(EngineError::Invalid(
                "no command specified: the image has no CMD or ENTRYPOINT".into(),
            ));
        }
        let user_str = o
            .user
            .clone()
            .or_else(|| cfg.user().clone())
            .unwrap_or_default();
        let user = user::resolve(&user_str, &layers).map_err(EngineError::Invalid)?;
        let mut user_env = c.env_from_files.clone();
        user_env.extend(expand_env(&o.env)?);
        let env = merge_env(&cfg.env().clone().unwrap_or_default(), &user_env);
        let cwd = o
            .workdir
            .clone()
            .or_else(|| cfg.working_dir().clone().filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".into());

        Ok(Resolved {
            image_id: image.id.clone(),
            layers,
            entrypoint,
            cmd,
            args,
            user_str,
            user,
            env,
            cwd,
            exposed: cfg.exposed_ports().clone().unwrap_or_default(),
        })
    }

    /// Volumes made, the spec and the record written (under the creation lock).
    /// Returns the volumes this call made, for a later failure to remove.
    fn persist(
        &self,
        o: &CreateOptions,
        c: Checked,
        r: Resolved,
    ) -> Result<(ContainerRecord, Vec<String>, crate::state::Creating), EngineError> {
        let id = ids::new_id();
        let network = c.net.network;
        let hostname = o.hostname.clone().unwrap_or_else(|| match network {
            NetworkMode::Host => host_hostname(),
            NetworkMode::None | NetworkMode::Bridge => id[..12].to_string(),
        });
        let mut ports = c.net.ports;
        if o.publish_all {
            for k in &r.exposed {
                if let Some(m) = crate::network::ports::parse_exposed(k) {
                    if !ports
                        .iter()
                        .any(|p| p.container_port == m.container_port && p.proto == m.proto)
                    {
                        ports.push(m);
                    }
                }
            }
        }
        let mut mounts = c.mounts;
        // Volumes last: they are the first thing made on disk.
        let (made_volumes, volume_lock) =
            self.prepare_mounts(&mut mounts, c.isolation, c.security.userns.is_some())?;
        let spec = SandboxSpec {
            process: ProcessSpec {
                args: r.args,
                env: r.env,
                cwd: r.cwd,
                user: r.user,
                tty: o.tty,
                stdin: o.stdin,
            },
            hostname,
            network,
            interfaces: Vec::new(),
            embedded_dns: c.net.user_network,
            resources: Resources {
                memory: c.memory,
                cpus: o.cpus,
                pids_limit: o.pids_limit,
                cpuset_cpus: c.cpuset_cpus,
            },
            isolation: c.isolation,
            mounts,
            security: c.security,
        };
        let mut rec = ContainerRecord {
            id: id.clone(),
            name: o.name.clone().unwrap_or_default(),
            created: chrono::Utc::now(),
            image: o.image.clone(),
            image_id: r.image_id,
            layers: r.layers.iter().map(|p| p.display().to_string()).collect(),
            entrypoint: r.entrypoint,
            cmd: r.cmd,
            user: r.user_str,
            spec,
            auto_remove: o.auto_remove,
            restart_count: 0,
            state: ContainerState::default(),
            vm: None,
            ports,
            links: c.net.links,
            log_config: c.log_config,
        };
        let inserted = if o.name.is_some() {
            self.store.insert(&rec)
        } else {
            self.store.insert_named(&mut rec).map(|(_, c)| c)
        };
        drop(volume_lock);
        match inserted {
            Ok(creating) => Ok((rec, made_volumes, creating)),
            Err(e) => {
                self.unprepare_mounts(&made_volumes, &id);
                Err(e.into())
            }
        }
    }

    /// What the container needs beyond its record: an address on its network, its
    /// /etc files, for a microVM its kernel and initramfs.
    fn provision(
        &self,
        o: &CreateOptions,
        c: &Checked,
        mut rec: ContainerRecord,
    ) -> Result<ContainerRecord, EngineError> {
        let id = rec.id.clone();
        if let NetChoice::Bridge(n) = &c.net.choice {
            let iface = self.lease_interface(
                &id,
                n,
                0,
                o.network_aliases.clone(),
                c.net.fixed_ip,
                c.isolation,
            )?;
            rec = self
                .store
                .update(&id, |r| r.spec.interfaces = vec![iface])?;
        }
        self.write_etc_files(&rec)?;
        if c.isolation == Isolation::Vm {
            let t = std::time::Instant::now();
            let files = self.prepare_vm()?;
            self.phase(crate::phase::Phase::VmFiles, t.elapsed());
            return Ok(self.store.update(&id, |r| r.vm = Some(files))?);
        }
        Ok(rec)
    }

    /// /etc/hostname, /etc/hosts and /etc/resolv.conf for the container.
    fn write_etc_files(&self, rec: &ContainerRecord) -> Result<(), EngineError> {
        let dir = self.paths.container_dir(&rec.id);
        let h = &rec.spec.hostname;
        let w = |name: &str, data: String| {
            std::fs::write(dir.join(name), data)
                .map_err(io_err(format!("cannot write {name} for the container")))
        };
        w("hostname", format!("{h}\n"))?;
        let mut bare = rec.clone();
        bare.links.clear();
        w(
            "hosts",
            crate::network::session::hosts_file(&self.store, &bare)?,
        )?;
        let host_resolv = || std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = match rec.spec.network {
            NetworkMode::Host => host_resolv(),
            NetworkMode::None => String::new(),
            NetworkMode::Bridge if rec.spec.embedded_dns => {
                format!(
                    "nameserver {}\noptions ndots:0\n",
                    crate::spec::EMBEDDED_DNS
                )
            }
            NetworkMode::Bridge => bridge_resolv_conf(&host_resolv()),
        };
        w("resolv.conf", resolv)?;
        for d in ["upper", "work"] {
            std::fs::create_dir_all(dir.join(d))
                .map_err(io_err("cannot create the container's writable layer"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> (Engine, tempfile::TempDir) {
        let d = tempfile::tempdir().unwrap();
        let paths = crate::paths::Paths::new(&d.path().join("root"), &d.path().join("run"));
        (Engine::open(paths).unwrap(), d)
    }

    fn opts() -> CreateOptions {
        CreateOptions {
            image: "busybox".into(),
            ..Default::default()
        }
    }

    /// The one error line `validate` gives.
    fn refused(e: &Engine, o: &CreateOptions) -> String {
        match e.validate(o) {
            Err(EngineError::Invalid(m)) => m,
            Err(other) => panic!("not an invalid-input error: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn memory_limits_below_docker_minimum_or_beyond_the_host_are_refused() {
        let (e, _d) = engine();
        let mut o = opts();
        o.memory = Some("4m".into());
        assert!(refused(&e, &o).contains("minimum memory limit"));
        o.memory = Some("99999999g".into());
        assert!(refused(&e, &o).contains("more than this host's"));
        o.isolation = Some(Isolation::Vm);
        assert!(refused(&e, &o).contains("of memory"));
        o.memory = Some("64m".into());
        assert_eq!(e.validate(&o).unwrap().memory, Some(64 << 20));
    }

    #[test]
    fn cpus_are_bounded_by_the_host_or_by_the_vmm() {
        let (e, _d) = engine();
        let mut o = opts();
        for c in [1e9, 0.0, f64::NAN] {
            o.cpus = Some(c);
            assert!(refused(&e, &o).contains("invalid --cpus"), "{c}");
        }
        o.isolation = Some(Isolation::Vm);
        o.cpus = Some(crate::spec::MAX_VCPUS as f64);
        assert!(
            e.validate(&o).is_ok(),
            "a microVM may have more vCPUs than the host"
        );
        o.cpus = Some(crate::spec::MAX_VCPUS as f64 + 1.0);
        assert!(refused(&e, &o).contains("vCPUs a microVM can have"));
    }

    #[test]
    fn names_hostnames_and_workdirs_are_checked() {
        let (e, _d) = engine();
        for h in ["a/b", "", "-x", &"a".repeat(64)] {
            let mut o = opts();
            o.hostname = Some(h.to_string());
            assert!(e.validate(&o).is_err(), "hostname {h:?}");
        }
        let mut o = opts();
        o.name = Some("../x".into());
        assert!(refused(&e, &o).contains("invalid container name"));
        let mut o = opts();
        o.workdir = Some("rel".into());
        assert!(refused(&e, &o).contains("absolute path"));
    }

    #[test]
    fn environment_entries_need_a_name_and_bare_names_come_from_ours() {
        assert!(expand_env(&["=value".into()]).is_err());
        assert!(expand_env(&[String::new()]).is_err());
        assert!(expand_env(&["A=b\0c".into()]).is_err());
        std::env::set_var("TB_UNIT_TEST_VAR", "from-host");
        assert_eq!(
            expand_env(&[
                "TB_UNIT_TEST_VAR".into(),
                "K=V=W".into(),
                "TB_UNSET_VAR_X".into()
            ])
            .unwrap(),
            ["TB_UNIT_TEST_VAR=from-host", "K=V=W"]
        );
    }

    #[test]
    fn a_microvm_has_its_own_network_stack() {
        let (e, _d) = engine();
        let mut o = opts();
        o.isolation = Some(Isolation::Vm);
        o.network = Some("host".into());
        assert!(refused(&e, &o).contains("own network stack"));
    }

    #[test]
    fn ports_links_ips_and_aliases_need_the_right_network() {
        let (e, _d) = engine();
        let mut o = opts();
        o.network = Some("none".into());
        o.publish = vec!["8080:80".into()];
        assert!(refused(&e, &o).contains("need a bridge network"));
        let mut o = opts();
        o.ip = Some("10.0.0.5".into());
        assert!(refused(&e, &o).contains("user-defined networks"));
        let mut o = opts();
        o.links = vec!["ghost:db".into()];
        assert!(refused(&e, &o).contains("no such container"));
        let mut o = opts();
        o.network = Some("nosuchnet".into());
        assert!(e.validate(&o).is_err());
        let mut o = opts();
        o.publish = vec!["99999:80".into()];
        assert!(e.validate(&o).is_err(), "port out of range");
    }

    #[test]
    fn a_microvm_takes_a_bounded_number_of_shares() {
        let (e, _d) = engine();
        let mut o = opts();
        o.isolation = Some(Isolation::Vm);
        o.volumes = (0..=crate::volume::vm::MAX_SHARES)
            .map(|i| format!("v{i}:/data{i}"))
            .collect();
        assert!(refused(&e, &o).contains("at most"));
        o.volumes.pop();
        assert!(e.validate(&o).is_ok());
    }

    #[test]
    fn security_options_follow_docker_and_refuse_what_twinbox_lacks() {
        let mut o = opts();
        o.security_opt = vec!["seccomp=unconfined".into(), "no-new-privileges".into()];
        let s = security_options(&o).unwrap();
        assert_eq!(s.seccomp, Seccomp::Unconfined);
        assert!(s.no_new_privileges);
        for bad in ["label=type:x", "apparmor=myprofile", "bogus", "seccomp="] {
            o.security_opt = vec![bad.into()];
            assert!(security_options(&o).is_err(), "{bad}");
        }
        o.security_opt = vec!["label:disable".into(), "no-new-privileges=false".into()];
        assert!(!security_options(&o).unwrap().no_new_privileges);
        o.security_opt = vec![];
        o.cap_add = vec!["NOT_A_CAP".into()];
        assert!(security_options(&o).is_err());
    }

    #[test]
    fn log_options_are_checked_before_anything_is_made() {
        let (e, _d) = engine();
        let mut o = opts();
        o.log_driver = Some("syslog".into());
        assert!(e.validate(&o).is_err());
        let mut o = opts();
        o.log_opts = vec!["max-size=lots".into()];
        assert!(e.validate(&o).is_err());
        // Nothing was written: no container, no volume.
        assert!(e.store.list().unwrap().is_empty());
    }
}
