//! `create`: image config + the user's flags -> one SandboxSpec and a container record.

use super::{io_err, user, Engine, EngineError};
use crate::spec::{merge_env, Isolation, NetworkMode, ProcessSpec, Resources, SandboxSpec};
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
    pub network: Option<String>,
    pub isolation: Option<Isolation>,
}

/// `-e KEY` takes KEY from our environment; `-e KEY=V` is literal.
fn expand_env(items: &[String]) -> Vec<String> {
    items
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect()
}

fn read_env_file(path: &PathBuf) -> Result<Vec<String>, EngineError> {
    let s = std::fs::read_to_string(path)
        .map_err(io_err(format!("cannot read env file {}", path.display())))?;
    Ok(expand_env(
        &s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect::<Vec<_>>(),
    ))
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

impl Engine {
    /// Create a container (state `created`). On error nothing is left behind.
    pub fn create(&self, o: &CreateOptions) -> Result<ContainerRecord, EngineError> {
        // Validate everything cheap before touching any store.
        let memory = o
            .memory
            .as_deref()
            .map(crate::util::size::parse_size)
            .transpose()
            .map_err(EngineError::Invalid)?;
        if let Some(m) = memory {
            if m < 6 * 1024 * 1024 {
                return Err(EngineError::Invalid(
                    "minimum memory limit allowed is 6MB".into(),
                ));
            }
        }
        if let Some(c) = o.cpus {
            if !(c > 0.0 && c.is_finite()) {
                return Err(EngineError::Invalid(format!(
                    "invalid --cpus {c}: must be a positive number"
                )));
            }
        }
        let network: NetworkMode = match &o.network {
            Some(n) => n.parse().map_err(EngineError::Invalid)?,
            None => NetworkMode::None,
        };
        let isolation = o.isolation.unwrap_or_default();
        if isolation == Isolation::Vm && network == NetworkMode::Host {
            return Err(EngineError::Invalid(
                "--network host cannot be used with --isolation vm: a microVM has its own network stack".into(),
            ));
        }
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
        let mut env_from_files = Vec::new();
        for f in &o.env_files {
            env_from_files.extend(read_env_file(f)?);
        }

        let t_image = std::time::Instant::now();
        let image = self.images.find_or_builtin(&o.image).map_err(|e| match e {
            crate::image::ImageError::NotFound(r) => EngineError::Invalid(format!(
                "no such image: {r} (only the built-in busybox is available until it is pulled or loaded)"
            )),
            other => other.into(),
        })?;
        let layers = self.images.layer_dirs(&image)?;
        self.phase("image", t_image.elapsed());
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
        let mut user_env = env_from_files;
        user_env.extend(expand_env(&o.env));
        let env = merge_env(&cfg.env().clone().unwrap_or_default(), &user_env);
        let cwd = o
            .workdir
            .clone()
            .or_else(|| cfg.working_dir().clone().filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".into());

        let id = ids::new_id();
        let name = o.name.clone().unwrap_or_default();
        let hostname = o.hostname.clone().unwrap_or_else(|| match network {
            NetworkMode::Host => host_hostname(),
            NetworkMode::None => id[..12].to_string(),
        });
        let spec = SandboxSpec {
            process: ProcessSpec {
                args,
                env,
                cwd,
                user,
                tty: o.tty,
                stdin: o.stdin,
            },
            hostname: hostname.clone(),
            network,
            resources: Resources {
                memory,
                cpus: o.cpus,
                pids_limit: o.pids_limit,
            },
            isolation,
        };
        let mut rec = ContainerRecord {
            id: id.clone(),
            name,
            created: chrono::Utc::now(),
            image: o.image.clone(),
            image_id: image.id.clone(),
            layers: layers.iter().map(|p| p.display().to_string()).collect(),
            entrypoint,
            cmd,
            user: user_str,
            spec,
            auto_remove: o.auto_remove,
            restart_count: 0,
            state: ContainerState::default(),
            vm: None,
        };
        if o.name.is_some() {
            self.store.insert(&rec)?;
        } else {
            self.store.insert_named(&mut rec)?;
        }
        let finish = || -> Result<ContainerRecord, EngineError> {
            self.write_etc_files(&rec)?;
            if isolation == Isolation::Vm {
                let t = std::time::Instant::now();
                let files = self.prepare_vm(&id, &image)?;
                self.phase("vm disks", t.elapsed());
                return Ok(self.store.update(&id, |r| r.vm = Some(files))?);
            }
            Ok(rec.clone())
        };
        match finish() {
            Ok(r) => Ok(r),
            Err(e) => {
                let _ = self.store.remove(&id);
                Err(e)
            }
        }
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
        w(
            "hosts",
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{h}\n"
            ),
        )?;
        let resolv = match rec.spec.network {
            NetworkMode::Host => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            NetworkMode::None => String::new(),
        };
        w("resolv.conf", resolv)?;
        for d in ["upper", "work"] {
            std::fs::create_dir_all(dir.join(d))
                .map_err(io_err("cannot create the container's writable layer"))?;
        }
        Ok(())
    }
}
