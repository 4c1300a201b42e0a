//! Starting a microVM container, in the order it happens: size the VM → its jail and
//! the agent's vsock listener → the virtiofsd back ends → the VMM process in its
//! cgroup → wait for the agent's greeting → start the workload.

use super::conn::{forward_stdin, start_failure, stdio_pipes, Conn, Route};
use super::virtiofsd::{self, Virtiofsd};
use super::{VmSandbox, VmStart, VmmCgroup, DEFAULT_MEMORY, GUEST_CID, VMM_OVERHEAD, VMM_THREADS};
use crate::guest::protocol::{self, AgentMsg, HostMsg};
use crate::phase::Phase;
use crate::sandbox::{SandboxError, WorkloadIo};
use crate::vmm::jail::{self, JailId, JailSpec};
use crate::vmm::process::{self as vmm_process, Setup, VmProcess};
use crate::vmm::{is_pvm_host, VmEnd, VmmError};
use std::fs::File;
use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a guest may take from power-on to its agent calling home.
const AGENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Guest RAM, vCPUs and the host CPUs the VMM is pinned to, from the container's limits.
struct Size {
    mem_bytes: u64,
    vcpus: u8,
    cpus: Option<Vec<usize>>,
}

fn size(cfg: &VmStart) -> Result<Size, SandboxError> {
    let r = &cfg.spec.resources;
    Ok(Size {
        mem_bytes: r.memory.unwrap_or(DEFAULT_MEMORY),
        vcpus: r.cpus.map(|c| c.ceil().clamp(1.0, 64.0) as u8).unwrap_or(1),
        // --cpuset-cpus: the VMM pins every thread it has — the vCPUs, the device
        // event loop — to those CPUs, and its cgroup holds it there.
        cpus: match &r.cpuset_cpus {
            Some(list) => Some(
                crate::util::cpuset::parse(list)
                    .map_err(SandboxError::Other)?
                    .into_iter()
                    .collect(),
            ),
            None => None,
        },
    })
}

fn jail_err(e: VmmError) -> SandboxError {
    SandboxError::Other(crate::util::error_chain(&e))
}

/// The monitor's listener the agent calls home on (in the jail, owned by the jail's uid).
struct AgentListener {
    listener: UnixListener,
    path: String,
}

/// The VMM's jail: its own identity and an empty directory that will hold only the
/// vsock sockets (the agent's listener among them).
fn prepare_jail(cfg: &VmStart) -> Result<(JailId, PathBuf, AgentListener), SandboxError> {
    std::fs::create_dir_all(&cfg.run_dir)?;
    let id = JailId::allocate(Path::new(jail::SLOTS_DIR), &cfg.id).map_err(jail_err)?;
    let dir = cfg.run_dir.join("vmm");
    jail::prepare_dir(&dir, id.id).map_err(jail_err)?;
    let base = dir.join(vmm_process::VSOCK_NAME);
    let own = |p: &str| std::os::unix::fs::lchown(p, Some(id.id), Some(id.id));
    let agent_path = format!("{}_{}", base.display(), protocol::AGENT_PORT);
    let agent = UnixListener::bind(&agent_path)?;
    own(&agent_path)?;
    agent.set_nonblocking(true)?;
    if let Some(r) = cfg.dns.clone() {
        let p = format!("{}_{}", base.display(), protocol::DNS_PORT);
        let dns = UnixListener::bind(&p)?;
        own(&p)?;
        std::thread::spawn(move || {
            // No timeout here: the guest's UDP relay keeps one stream open for the
            // VM's life (its TCP relay opens one per connection).
            for c in dns.incoming().flatten() {
                let r = r.clone();
                std::thread::spawn(move || crate::network::dns::serve_stream(c, r.as_ref()));
            }
        });
    }
    Ok((
        id,
        dir,
        AgentListener {
            listener: agent,
            path: agent_path,
        },
    ))
}

/// One virtiofsd per share, before the VMM: it is handed their connections.
fn start_shares(
    cfg: &VmStart,
    console: &File,
) -> Result<(Vec<Virtiofsd>, Vec<UnixStream>), SandboxError> {
    let t = Instant::now();
    let mut daemons = Vec::new();
    let mut streams = Vec::new();
    for sh in &cfg.shares {
        let (d, stream) = virtiofsd::start(sh, &cfg.run_dir, console).map_err(jail_err)?;
        daemons.push(d);
        streams.push(stream);
    }
    cfg.trace(Phase::Virtiofsd, t.elapsed());
    Ok((daemons, streams))
}

/// The VMM process, in a cgroup that holds guest RAM plus a bounded overhead and its
/// threads; returns once the VM runs.
fn spawn_vmm(
    cfg: &mut VmStart,
    size: Size,
    jail: JailId,
    jail_dir: PathBuf,
    console: File,
    shares: Vec<UnixStream>,
) -> Result<(VmProcess, VmmCgroup), SandboxError> {
    let cgroup = crate::process::cgroups::manager(&cfg.id)
        .map_err(|e| SandboxError::Other(format!("the VMM's cgroup: {e}")))?;
    cgroup
        .create(
            &crate::spec::Resources {
                memory: Some(size.mem_bytes + VMM_OVERHEAD),
                cpus: None,
                pids_limit: Some(i64::from(size.vcpus) + VMM_THREADS),
                cpuset_cpus: cfg.spec.resources.cpuset_cpus.clone(),
            },
            false,
        )
        .map_err(|e| SandboxError::Other(format!("the VMM's cgroup: {e}")))?;
    let cgroup = VmmCgroup(cgroup);
    let net = cfg.net.take();
    let setup = Setup {
        kernel: cfg.kernel.clone(),
        initrd: Some(cfg.initrd.clone()),
        cmdline: format!("twinbox.port={}", protocol::AGENT_PORT),
        mem_bytes: size.mem_bytes,
        vcpus: size.vcpus,
        disks: Vec::new(),
        shares: cfg.shares.iter().map(|s| s.tag.clone()).collect(),
        net_mac: net.as_ref().map(|n| n.mac),
        vsock_cid: Some(GUEST_CID),
        quiet: true,
        jail: JailSpec {
            dir: jail_dir,
            uid: jail.id,
            gid: jail.id,
        },
        cpus: size.cpus,
        parent: 0,
    };
    let vm = VmProcess::spawn(
        Path::new("/proc/self/exe"),
        setup,
        jail,
        console,
        net.map(|n| n.tap),
        shares,
        &|pid| {
            cgroup
                .0
                .add(pid)
                .map_err(|e| VmmError::Jail(format!("the VMM's cgroup: {e}")))
        },
    )
    .map_err(jail_err)?;
    for (phase, d) in &vm.boot.steps {
        cfg.trace(*phase, *d);
    }
    Ok((vm, cgroup))
}

/// Wait for the agent to call home (or for the VM to die trying) and check its
/// greeting. Returns the connection, the guest's kernel release and when it called.
fn handshake(
    cfg: &VmStart,
    vm: &VmProcess,
    agent: AgentListener,
) -> Result<(UnixStream, String, Instant), SandboxError> {
    let deadline = Instant::now() + AGENT_TIMEOUT;
    let stream = loop {
        match agent.listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(end) = vm.wait(Some(Duration::from_millis(5))) {
            return Err(vm_died(&end, &cfg.console_log));
        }
        if Instant::now() > deadline {
            vm.power_off();
            return Err(SandboxError::Other(format!(
                "the guest agent did not start within {} s (console: {})",
                AGENT_TIMEOUT.as_secs(),
                cfg.console_log.display()
            )));
        }
    };
    let accepted = Instant::now();
    drop(agent.listener);
    let _ = std::fs::remove_file(&agent.path);
    stream.set_nonblocking(false)?;
    let greeting = protocol::read_frame(&mut &stream)?
        .ok_or_else(|| SandboxError::Other("the agent hung up".into()))?;
    let refuse = |msg: String| {
        vm.power_off();
        Err(SandboxError::Other(msg))
    };
    match protocol::parse_json::<AgentMsg>(&greeting.2)? {
        AgentMsg::Ready { version, kernel } if version == protocol::VERSION => {
            Ok((stream, kernel, accepted))
        }
        AgentMsg::Ready { version, .. } => refuse(format!(
            "the guest agent speaks protocol {version}, this twinbox {}: rebuild the agent initramfs",
            protocol::VERSION
        )),
        other => refuse(format!("unexpected agent greeting: {other:?}")),
    }
}

/// Trace the guest's boot: from the first KVM_RUN to the agent's boot-timer write,
/// and from there to its call.
fn trace_boot(cfg: &VmStart, vm: &VmProcess, accepted: Instant) {
    let agent_at = *vm.boot.agent.lock().unwrap_or_else(|e| e.into_inner());
    match agent_at {
        Some(at) => {
            cfg.trace(
                Phase::BootToAgent,
                at.saturating_duration_since(vm.boot.first_run),
            );
            cfg.trace(Phase::AgentConnect, accepted.saturating_duration_since(at));
        }
        None => cfg.trace(
            Phase::BootToAgent,
            accepted.saturating_duration_since(vm.boot.first_run),
        ),
    }
}

/// Ask the agent to set up the root and start the workload on stream 0.
fn start_workload(
    cfg: &VmStart,
    vm: &VmProcess,
    conn: &Arc<Conn>,
) -> Result<(WorkloadIo, Receiver<AgentMsg>), SandboxError> {
    let t = Instant::now();
    let p = &cfg.spec.process;
    let (io, out_w, err_w, in_r) = stdio_pipes(p.tty, p.stdin)?;
    let (tx, rx) = channel();
    conn.route(
        0,
        Route::Process {
            stdout: Some(out_w),
            stderr: err_w,
            control: tx,
        },
    );
    conn.send(
        0,
        &HostMsg::Start {
            spec: Box::new(cfg.spec.clone()),
            etc: cfg.etc.clone(),
            confinement: cfg.confinement.clone(),
        },
    )?;
    let arg0 = p.args.first().cloned().unwrap_or_default();
    match rx.recv_timeout(AGENT_TIMEOUT) {
        Ok(AgentMsg::Started { .. }) => {}
        Ok(other) => {
            let e = start_failure(other, &arg0);
            let _ = conn.send(0, &HostMsg::Bye);
            if vm.wait(Some(Duration::from_secs(5))).is_none() {
                vm.power_off();
            }
            return Err(e);
        }
        Err(_) => {
            vm.power_off();
            return Err(SandboxError::Other(
                "the guest agent did not start the workload".into(),
            ));
        }
    }
    cfg.trace(Phase::StartWorkload, t.elapsed());
    if let Some(r) = in_r {
        forward_stdin(conn.clone(), 0, r);
    }
    Ok((io, rx))
}

impl VmSandbox {
    /// Boot the microVM, wait for its agent, and start the workload.
    pub fn start(mut cfg: VmStart) -> Result<(VmSandbox, WorkloadIo), SandboxError> {
        if is_pvm_host() && std::env::var_os("TWINBOX_ALLOW_PVM").is_none() {
            return Err(SandboxError::Unsupported(VmmError::PvmHost.to_string()));
        }
        let size = size(&cfg)?;
        let mem_bytes = size.mem_bytes;
        let (jail, jail_dir, agent) = prepare_jail(&cfg)?;
        let console = File::create(&cfg.console_log)?;
        let (fsd, share_streams) = start_shares(&cfg, &console)?;
        let (vm, cgroup) = spawn_vmm(&mut cfg, size, jail, jail_dir, console, share_streams)?;
        let setup_ms = vm.boot.setup().as_secs_f64() * 1e3;
        let (stream, kernel, accepted) = handshake(&cfg, &vm, agent)?;
        let boot_ms = vm.boot.guest_boot().map(|d| d.as_secs_f64() * 1e3);
        trace_boot(&cfg, &vm, accepted);
        let reader = stream.try_clone()?;
        let conn = Arc::new(Conn::new(stream));
        {
            let c = conn.clone();
            std::thread::spawn(move || c.dispatch(reader));
        }
        let (io, rx) = start_workload(&cfg, &vm, &conn)?;
        Ok((
            VmSandbox {
                vm,
                cgroup,
                conn,
                main: Mutex::new(rx),
                exit: Mutex::new(None),
                run_dir: cfg.run_dir,
                mem_bytes,
                fsd: Mutex::new(fsd),
                boot_ms,
                setup_ms,
                agent_kernel: kernel,
            },
            io,
        ))
    }
}

fn vm_died(end: &VmEnd, console: &Path) -> SandboxError {
    match end {
        VmEnd::InternalError { .. } if is_pvm_host() => {
            SandboxError::Unsupported(VmmError::PvmHost.to_string())
        }
        other => SandboxError::Other(format!(
            "the microVM stopped before its agent started ({other:?}); see {}",
            console.display()
        )),
    }
}
