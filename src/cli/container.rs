//! Container commands.

use super::format::{self, Format};
use crate::engine::{
    CopyTarget, CreateOptions, Engine, EngineError, ExecOptions, LogOptions, StartMode,
};
use crate::spec::Isolation;
use clap::{ArgAction, Args, Subcommand};
use std::path::PathBuf;

/// Flags shared by `run` and `create`.
#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to take it from here)
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long)]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Memory limit (e.g. 64m, 1g); for vm, the guest's RAM
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Number of CPUs (process: CPU quota; vm: vCPUs)
    #[arg(long)]
    cpus: Option<f64>,
    /// Bind mount a volume: [NAME|/HOST/PATH:]/CONTAINER/PATH[:ro|rw|nocopy]
    #[arg(short = 'v', long = "volume", value_name = "SPEC")]
    volumes: Vec<String>,
    /// Attach a filesystem mount: type=bind|volume|tmpfs,source=…,target=…[,readonly]
    #[arg(long = "mount", value_name = "SPEC")]
    mounts: Vec<String>,
    /// Mount a tmpfs: /PATH[:size=64m,mode=1777,ro,exec]
    #[arg(long = "tmpfs", value_name = "SPEC")]
    tmpfs: Vec<String>,
    /// Tune the container's pids limit (-1 for unlimited)
    #[arg(long)]
    pids_limit: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1); vm: the VMM and its vCPUs are pinned
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Network: "bridge" (default), a user-defined network, "none" (only lo) or "host"
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// Add a network-scoped alias (user-defined networks)
    #[arg(long)]
    network_alias: Vec<String>,
    /// IPv4 address on a user-defined network
    #[arg(long)]
    ip: Option<String>,
    /// Publish a container's port to the host: [IP:][HOSTPORT:]CTRPORT[/tcp|udp]
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish every port the image exposes to a free host port
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// Add a link to another container: NAME[:ALIAS]
    #[arg(long)]
    link: Vec<String>,
    /// Isolation model: process (namespaces + cgroups) or vm (KVM microVM)
    #[arg(long, env = "TWINBOX_ISOLATION")]
    isolation: Option<Isolation>,
    /// Add Linux capabilities (NET_ADMIN, CAP_SYS_PTRACE, ALL)
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop Linux capabilities (NET_RAW, ALL)
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Give extended privileges: every capability and device, no seccomp, unmasked /proc and /sys
    #[arg(long)]
    privileged: bool,
    /// Security options: seccomp=unconfined|PROFILE.json, no-new-privileges[=true|false],
    /// systempaths=unconfined
    #[arg(long)]
    security_opt: Vec<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    read_only: bool,
    /// Logging driver: json-file (default), local, none
    #[arg(long)]
    log_driver: Option<String>,
    /// Log driver options: max-size=20m, max-file=5
    #[arg(long)]
    log_opt: Vec<String>,
    /// User namespace: host (root is the host's root), or remap (root is an unprivileged
    /// host id from /etc/subuid; the default when daemon.json sets userns-remap)
    #[arg(long)]
    userns: Option<String>,
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
    /// Image to run
    image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl CreateArgs {
    fn options(&self) -> CreateOptions {
        CreateOptions {
            image: self.image.clone(),
            cmd: self.command.clone(),
            entrypoint: self.entrypoint.clone(),
            name: self.name.clone(),
            env: self.env.clone(),
            env_files: self.env_file.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            tty: self.tty,
            stdin: self.interactive,
            auto_remove: self.rm,
            memory: self.memory.clone(),
            cpus: self.cpus,
            pids_limit: self.pids_limit,
            cpuset_cpus: self.cpuset_cpus.clone(),
            volumes: self.volumes.clone(),
            mounts: self.mounts.clone(),
            tmpfs: self.tmpfs.clone(),
            network: self.network.clone(),
            network_aliases: self.network_alias.clone(),
            ip: self.ip.clone(),
            publish: self.publish.clone(),
            publish_all: self.publish_all,
            links: self.link.clone(),
            isolation: self.isolation,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            security_opt: self.security_opt.clone(),
            read_only: self.read_only,
            log_driver: self.log_driver.clone(),
            log_opts: self.log_opt.clone(),
            userns: self.userns.clone(),
        }
    }
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run in the background and print the container id
    #[arg(short = 'd', long)]
    detach: bool,
    /// Print each start-up step as it happens, with its cost and what it does
    #[arg(long)]
    explain: bool,
    #[command(flatten)]
    create: CreateArgs,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach stdout/stderr and forward signals
    #[arg(short = 'a', long)]
    attach: bool,
    /// Attach stdin
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing
    #[arg(short = 't', long, default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct Refs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (SIGKILL)
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove the container's anonymous volumes too
    #[arg(short = 'v', long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// "table", "json", or a template like '{{.ID}} {{.Names}}'
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long)]
    tail: Option<String>,
    /// Show timestamps
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Show the guest kernel's console log (vm containers) instead of the workload's output
    #[arg(long)]
    details: bool,
    container: String,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run the command in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Username or UID
    #[arg(short = 'u', long)]
    user: Option<String>,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Print one sample and exit
    #[arg(long)]
    no_stream: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ContainerCommand {
    /// Remove all stopped containers
    Prune {
        /// Do not prompt for confirmation (twinbox never prompts)
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// List containers
    Ls(PsArgs),
    /// Low-level information on containers
    Inspect(Refs),
}

/// Apply `f` to each reference, printing it on success and an error line otherwise.
pub fn each(
    refs: &[String],
    f: impl Fn(&str) -> Result<(), EngineError>,
) -> Result<i32, EngineError> {
    let mut code = 0;
    for r in refs {
        match f(r) {
            Ok(()) => println!("{r}"),
            Err(e) => {
                Engine::warn(&format!("twinbox: {}", crate::monitor::error_chain(&e)));
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn run(engine: &mut Engine, a: RunArgs) -> Result<i32, EngineError> {
    let opts = a.create.options();
    if a.explain {
        eprintln!(
            "twinbox: starting {} under {} isolation:",
            opts.image,
            opts.isolation.unwrap_or_default()
        );
        engine.on_phase = Some(Box::new(crate::phase::print_step));
    }
    let (rec, code) = engine.run(&opts, a.detach)?;
    if a.detach {
        println!("{}", rec.id);
        return Ok(0);
    }
    Ok(code.unwrap_or(0))
}

pub fn create(engine: &Engine, a: CreateArgs) -> Result<i32, EngineError> {
    let rec = engine.create(&a.options())?;
    println!("{}", rec.id);
    Ok(0)
}

pub fn start(engine: &Engine, a: StartArgs) -> Result<i32, EngineError> {
    if a.attach || a.interactive {
        if a.containers.len() != 1 {
            return Err(EngineError::Invalid(
                "you cannot start and attach multiple containers at once".into(),
            ));
        }
        let code = engine.start(
            &a.containers[0],
            StartMode::Attached {
                stdin: a.interactive,
                proxy_signals: true,
            },
        )?;
        return Ok(code.unwrap_or(0));
    }
    each(&a.containers, |c| {
        engine.start(c, StartMode::Detached).map(|_| ())
    })
}

pub fn stop(engine: &Engine, a: StopArgs) -> Result<i32, EngineError> {
    each(&a.containers, |c| engine.stop(c, a.time).map(|_| ()))
}

pub fn restart(engine: &Engine, a: StopArgs) -> Result<i32, EngineError> {
    each(&a.containers, |c| engine.restart(c, a.time).map(|_| ()))
}

pub fn kill(engine: &Engine, a: KillArgs) -> Result<i32, EngineError> {
    let sig = crate::engine::parse_signal(&a.signal)?;
    each(&a.containers, |c| engine.kill(c, sig).map(|_| ()))
}

pub fn rm(engine: &Engine, a: RmArgs) -> Result<i32, EngineError> {
    each(&a.containers, |c| {
        engine.remove(c, a.force, a.volumes).map(|_| ())
    })
}

pub fn ps(engine: &Engine, a: PsArgs) -> Result<i32, EngineError> {
    let recs = engine.list(a.all)?;
    // A container whose record cannot be read is listed as dead, with why (rm -f
    // removes it); the others are unaffected.
    let damaged = if a.all { engine.damaged()? } else { Vec::new() };
    let id_of = |id: &str| -> String {
        if a.no_trunc {
            id.to_string()
        } else {
            id.chars().take(12).collect()
        }
    };
    if a.quiet {
        for id in recs
            .iter()
            .map(|r| &r.id)
            .chain(damaged.iter().map(|d| &d.id))
        {
            println!("{}", id_of(id));
        }
        return Ok(0);
    }
    let mut rows: Vec<_> = recs.iter().map(|r| engine.summary(r)).collect();
    if a.no_trunc {
        for (row, r) in rows.iter_mut().zip(&recs) {
            row.id = r.id.clone();
            row.command = format!("\"{}\"", r.command_line());
        }
    }
    rows.extend(damaged.iter().map(|d| crate::engine::ContainerSummary {
        id: id_of(&d.id),
        image: String::new(),
        command: String::new(),
        created_at: String::new(),
        running_for: String::new(),
        status: format!("Dead (record unreadable: {})", d.reason),
        state: "dead".into(),
        names: String::new(),
        isolation: String::new(),
        ports: String::new(),
    }));
    match Format::parse(a.format.as_deref()) {
        Format::Json => {
            for r in &rows {
                println!("{}", serde_json::to_string(r).unwrap_or_default());
            }
        }
        Format::Template(t) => {
            for r in &rows {
                println!("{}", format::template(&t, r));
            }
        }
        Format::Table => {
            let data: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.image.clone(),
                        r.command.clone(),
                        r.running_for.clone(),
                        r.status.clone(),
                        r.isolation.clone(),
                        r.ports.clone(),
                        r.names.clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                format::table(
                    &[
                        "CONTAINER ID",
                        "IMAGE",
                        "COMMAND",
                        "CREATED",
                        "STATUS",
                        "ISOLATION",
                        "PORTS",
                        "NAMES"
                    ],
                    &data
                )
            );
        }
    }
    Ok(0)
}

pub fn inspect(engine: &Engine, r: Refs) -> Result<i32, EngineError> {
    let mut out = Vec::new();
    let mut code = 0;
    for c in &r.containers {
        match engine.inspect(c) {
            Ok(v) => out.push(v),
            Err(e) => {
                Engine::warn(&format!("twinbox: {}", crate::monitor::error_chain(&e)));
                code = 1;
            }
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&out).unwrap_or_else(|_| "[]".into())
    );
    Ok(code)
}

pub fn wait(engine: &Engine, r: Refs) -> Result<i32, EngineError> {
    let mut code = 0;
    for c in &r.containers {
        match engine.wait(c) {
            Ok(x) => println!("{x}"),
            Err(e) => {
                Engine::warn(&format!("twinbox: {}", crate::monitor::error_chain(&e)));
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn logs(engine: &Engine, a: LogsArgs) -> Result<i32, EngineError> {
    if a.details {
        print!("{}", engine.console_log(&a.container)?);
        return Ok(0);
    }
    let tail = match a.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            EngineError::Invalid(format!("invalid --tail {n:?}: use a number or \"all\""))
        })?),
    };
    engine.logs(
        &a.container,
        &LogOptions {
            follow: a.follow,
            tail,
            timestamps: a.timestamps,
        },
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )?;
    Ok(0)
}

pub fn exec(engine: &Engine, a: ExecArgs) -> Result<i32, EngineError> {
    let code = engine.exec(
        &a.container,
        &ExecOptions {
            cmd: a.command,
            env: a.env,
            workdir: a.workdir,
            user: a.user,
            tty: a.tty,
            stdin: a.interactive,
            detach: a.detach,
        },
    )?;
    Ok(code.unwrap_or(0))
}

pub fn attach(engine: &Engine, c: &str) -> Result<i32, EngineError> {
    Ok(engine.attach(c)?.unwrap_or(0))
}

pub fn cp(engine: &Engine, src: &str, dst: &str) -> Result<i32, EngineError> {
    engine.copy(&CopyTarget::parse(src), &CopyTarget::parse(dst))?;
    Ok(0)
}

pub fn top(engine: &Engine, c: &str) -> Result<i32, EngineError> {
    let rows = engine.top(c)?;
    let data: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.uid.to_string(),
                r.pid.to_string(),
                r.ppid.to_string(),
                r.stime.clone(),
                r.time.clone(),
                r.cmd.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        format::table(&["UID", "PID", "PPID", "STIME", "TIME", "CMD"], &data)
    );
    Ok(0)
}

pub fn stats(engine: &Engine, a: StatsArgs) -> Result<i32, EngineError> {
    loop {
        let mut data = Vec::new();
        for c in &a.containers {
            let rec = engine.get(c)?;
            let s = engine.stats(c)?;
            data.push(vec![
                rec.short_id().to_string(),
                rec.name.clone(),
                format!("{:.2}s", s.cpu_usage_ns as f64 / 1e9),
                format!(
                    "{} / {}",
                    crate::util::size::human_binary(s.memory_bytes),
                    s.memory_limit
                        .map(crate::util::size::human_binary)
                        .unwrap_or_else(|| "unlimited".into())
                ),
                s.pids.to_string(),
            ]);
        }
        print!(
            "{}",
            format::table(
                &[
                    "CONTAINER ID",
                    "NAME",
                    "CPU TIME",
                    "MEM USAGE / LIMIT",
                    "PIDS"
                ],
                &data
            )
        );
        if a.no_stream {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

pub fn container_command(engine: &Engine, c: ContainerCommand) -> Result<i32, EngineError> {
    match c {
        ContainerCommand::Prune { .. } => {
            let removed = engine.prune()?;
            println!("Deleted Containers:");
            for id in &removed {
                println!("{id}");
            }
            println!();
            println!("Total: {} container(s) removed", removed.len());
            Ok(0)
        }
        ContainerCommand::Ls(a) => ps(engine, a),
        ContainerCommand::Inspect(r) => inspect(engine, r),
    }
}

/// `diff`: what changed in the container's writable layer.
pub fn diff(engine: &Engine, container: &str) -> Result<i32, EngineError> {
    for (kind, path) in engine.diff(container)? {
        println!("{} {path}", kind.letter());
    }
    Ok(0)
}
