//! The vm backend as the monitor sees it: a microVM plus a conversation with its guest
//! agent over vsock, behind the same `Sandbox` trait as the process backend.

use super::jail::{self, JailId, JailSpec};
use super::process::{self, Setup, VmProcess};
use super::{VmEnd, VmmError};
use crate::guest::protocol::{self, AgentMsg, HostMsg, Kind};
use crate::sandbox::{
    ExecProcess, ExitInfo, Sandbox, SandboxError, SandboxStats, TopRow, WorkloadIo,
};
use crate::spec::SandboxSpec;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Default guest RAM when `--memory` is not given.
pub const DEFAULT_MEMORY: u64 = 256 << 20;
const GUEST_CID: u64 = 3;
/// The VMM's memory beyond guest RAM that its cgroup allows (its own heap and stacks,
/// the page cache of its disks).
const VMM_OVERHEAD: u64 = 64 << 20;
/// The VMM's threads beyond its vCPUs (control, reporter, devices), with room.
const VMM_THREADS: i64 = 16;

/// The VMM's cgroup, removed when dropped (after the VMM, which the sandbox drops
/// first: fields drop in order).
struct VmmCgroup(Box<dyn crate::process::cgroups::CgroupManager>);

impl Drop for VmmCgroup {
    fn drop(&mut self) {
        let _ = self.0.kill_all();
        let _ = self.0.destroy();
    }
}
/// How long a guest may take from power-on to its agent calling home.
const AGENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything the vm backend needs to start a container.
pub struct VmStart {
    /// The container's id: its VMM's cgroup and identity are keyed by it.
    pub id: String,
    pub spec: SandboxSpec,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Directories shared over virtio-fs (the root first, then volumes and bind
    /// mounts), each served by its own virtiofsd.
    pub shares: Vec<super::virtiofsd::ShareSpec>,
    /// Directory for the vsock sockets.
    pub run_dir: PathBuf,
    /// Where the guest's serial console goes (kernel log).
    pub console_log: PathBuf,
    /// /etc/hostname, /etc/hosts, /etc/resolv.conf for the guest.
    pub etc: Vec<(String, String)>,
    /// The network interface (a TAP on a twinbox bridge), if any.
    pub net: Option<super::VmNet>,
    /// Answers the guest agent's DNS relay (vsock port `protocol::DNS_PORT`).
    pub dns: Option<Arc<dyn crate::network::dns::Resolver>>,
    pub trace: Option<crate::sandbox::Trace>,
    /// Capabilities, no_new_privs and seccomp, applied by the agent in the guest.
    pub confinement: crate::launch::confine::Confinement,
}

/// Where frames for one stream go.
enum Route {
    Process {
        stdout: Option<File>,
        stderr: Option<File>,
        control: Sender<AgentMsg>,
    },
    Copy {
        data: Option<Sender<Vec<u8>>>,
        control: Sender<AgentMsg>,
    },
    Control(Sender<AgentMsg>),
}

struct Conn {
    writer: Mutex<UnixStream>,
    routes: Mutex<HashMap<u32, Route>>,
    next: AtomicU32,
    /// The agent's connection ended.
    closed: Mutex<bool>,
    closed_cv: Condvar,
}

impl Conn {
    fn send(&self, stream: u32, msg: &HostMsg) -> io::Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        protocol::write_json(&mut *w, stream, msg)
    }

    fn send_data(&self, kind: Kind, stream: u32, data: &[u8]) -> io::Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        protocol::write_frame(&mut *w, kind, stream, data)
    }

    fn route(&self, stream: u32, r: Route) {
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream, r);
    }

    /// Read frames from the agent and deliver them, until the connection ends.
    fn dispatch(&self, mut reader: UnixStream) {
        while let Ok(Some((kind, stream, payload))) = protocol::read_frame(&mut reader) {
            let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            let Some(route) = routes.get_mut(&stream) else {
                continue;
            };
            match (kind, route) {
                (
                    Kind::Stdout,
                    Route::Process {
                        stdout: Some(f), ..
                    },
                )
                | (
                    Kind::Stderr,
                    Route::Process {
                        stderr: Some(f), ..
                    },
                ) => {
                    let _ = f.write_all(&payload);
                }
                (Kind::Data, Route::Copy { data: Some(tx), .. }) => {
                    let _ = tx.send(payload);
                }
                (Kind::DataEof, Route::Copy { data, .. }) => {
                    *data = None;
                }
                (Kind::Json, route) => {
                    let Ok(msg) = protocol::parse_json::<AgentMsg>(&payload) else {
                        continue;
                    };
                    let done = matches!(msg, AgentMsg::Exited { .. });
                    match route {
                        Route::Process {
                            control,
                            stdout,
                            stderr,
                        } => {
                            if done {
                                // Output precedes the exit on the stream: close the pipes.
                                *stdout = None;
                                *stderr = None;
                            }
                            let _ = control.send(msg);
                        }
                        Route::Copy { control, .. } | Route::Control(control) => {
                            let _ = control.send(msg);
                        }
                    }
                    if done {
                        routes.remove(&stream);
                    }
                }
                _ => {}
            }
        }
        // The agent is gone: close every stream so nobody waits forever.
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.closed_cv.notify_all();
    }
}

/// Pipes for a process's stdio on the host: (what the monitor reads/writes, what the
/// dispatcher writes into, stdin reader to forward).
fn stdio_pipes(
    tty: bool,
    stdin: bool,
) -> Result<(WorkloadIo, File, Option<File>, Option<File>), SandboxError> {
    let (out_r, out_w) = crate::launch::pipe()?;
    let (err_r, err_w) = if tty {
        (None, None)
    } else {
        let (r, w) = crate::launch::pipe()?;
        (Some(r), Some(w))
    };
    let (in_r, in_w) = if stdin || tty {
        let (r, w) = crate::launch::pipe()?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    Ok((
        WorkloadIo {
            stdin: in_w,
            stdout: out_r,
            stderr: err_r,
        },
        out_w,
        err_w,
        in_r,
    ))
}

/// Forward a stdin pipe to the agent as Stdin frames, then StdinEof.
fn forward_stdin(conn: Arc<Conn>, stream: u32, mut r: File) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = conn.send_data(Kind::StdinEof, stream, &[]);
                    return;
                }
                Ok(n) => {
                    if conn.send_data(Kind::Stdin, stream, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

fn start_failure(msg: AgentMsg, arg0: &str) -> SandboxError {
    match msg {
        AgentMsg::Failed { message, code } => match code {
            127 => SandboxError::NotFound(arg0.to_string()),
            126 => SandboxError::NotExecutable(arg0.to_string()),
            _ => SandboxError::Other(message),
        },
        other => SandboxError::Other(format!("unexpected answer from the agent: {other:?}")),
    }
}

pub struct VmSandbox {
    vm: VmProcess,
    cgroup: VmmCgroup,
    conn: Arc<Conn>,
    main: Mutex<Receiver<AgentMsg>>,
    exit: Mutex<Option<ExitInfo>>,
    run_dir: PathBuf,
    mem_bytes: u64,
    /// The virtio-fs back ends, stopped with the VM.
    fsd: Mutex<Vec<super::virtiofsd::Virtiofsd>>,
    /// Guest boot time (first KVM_RUN to the agent's boot-timer write).
    pub boot_ms: Option<f64>,
    pub setup_ms: f64,
    pub agent_kernel: String,
}

/// An `exec` in the guest.
struct VmExec {
    io: Option<WorkloadIo>,
    rx: Mutex<Receiver<AgentMsg>>,
    conn: Arc<Conn>,
    stream: u32,
}

impl ExecProcess for VmExec {
    fn take_io(&mut self) -> Option<WorkloadIo> {
        self.io.take()
    }

    fn wait(&self) -> Result<i32, SandboxError> {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match rx.recv() {
                Ok(AgentMsg::Exited { code, .. }) => return Ok(code),
                Ok(_) => {}
                Err(_) => return Err(SandboxError::Other("the VM went away".into())),
            }
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        let _ = self.conn.send(self.stream, &HostMsg::Resize { rows, cols });
    }
}

impl VmSandbox {
    /// Boot the microVM, wait for its agent, and start the workload.
    pub fn start(cfg: VmStart) -> Result<(VmSandbox, WorkloadIo), SandboxError> {
        if super::is_pvm_host() && std::env::var_os("TWINBOX_ALLOW_PVM").is_none() {
            return Err(SandboxError::Unsupported(VmmError::PvmHost.to_string()));
        }
        let mem_bytes = cfg.spec.resources.memory.unwrap_or(DEFAULT_MEMORY);
        let vcpus = cfg
            .spec
            .resources
            .cpus
            .map(|c| c.ceil().clamp(1.0, 64.0) as u8)
            .unwrap_or(1);
        // --cpuset-cpus: the VMM pins every thread it has — the vCPUs, the device
        // event loop — to those CPUs, and its cgroup holds it there.
        let cpus = match &cfg.spec.resources.cpuset_cpus {
            Some(list) => Some(crate::util::cpuset::parse(list).map_err(SandboxError::Other)?),
            None => None,
        };
        std::fs::create_dir_all(&cfg.run_dir)?;
        // The VMM's jail: its own identity and an empty directory that will hold only
        // the vsock sockets (the listeners here are the monitor's, connectable by it).
        let jail_err = |e: VmmError| SandboxError::Other(crate::util::error_chain(&e));
        let slots = std::path::Path::new(jail::SLOTS_DIR);
        let jail_id = JailId::allocate(slots, &cfg.id).map_err(jail_err)?;
        let jail_dir = cfg.run_dir.join("vmm");
        jail::prepare_dir(&jail_dir, jail_id.id).map_err(jail_err)?;
        let base = jail_dir.join(process::VSOCK_NAME);
        let own = |p: &str| std::os::unix::fs::lchown(p, Some(jail_id.id), Some(jail_id.id));
        let agent_path = format!("{}_{}", base.display(), protocol::AGENT_PORT);
        let listener = UnixListener::bind(&agent_path)?;
        own(&agent_path)?;
        listener.set_nonblocking(true)?;
        if let Some(r) = cfg.dns.clone() {
            let p = format!("{}_{}", base.display(), protocol::DNS_PORT);
            let dns = UnixListener::bind(&p)?;
            own(&p)?;
            std::thread::spawn(move || {
                // No timeout here: the guest's UDP relay keeps one stream open for
                // the VM's life (its TCP relay opens one per connection).
                for c in dns.incoming().flatten() {
                    let r = r.clone();
                    std::thread::spawn(move || crate::network::dns::serve_stream(c, r.as_ref()));
                }
            });
        }
        let console = File::create(&cfg.console_log)?;
        // The shares' back ends, before the VMM: it is handed their connections.
        let t_fsd = Instant::now();
        let mut fsd = Vec::new();
        let mut share_streams = Vec::new();
        for sh in &cfg.shares {
            let (d, stream) =
                super::virtiofsd::start(sh, &cfg.run_dir, &console).map_err(jail_err)?;
            fsd.push(d);
            share_streams.push(stream);
        }
        if let Some(f) = &cfg.trace {
            f("virtiofsd", t_fsd.elapsed());
        }
        let mut cfg = cfg;
        let net = cfg.net.take();
        // The VMM's cgroup: guest RAM plus a bounded overhead, its threads.
        let cgroup = crate::process::cgroups::manager(&cfg.id)
            .map_err(|e| SandboxError::Other(format!("the VMM's cgroup: {e}")))?;
        cgroup
            .create(
                &crate::spec::Resources {
                    memory: Some(mem_bytes + VMM_OVERHEAD),
                    cpus: None,
                    pids_limit: Some(i64::from(vcpus) + VMM_THREADS),
                    cpuset_cpus: cfg.spec.resources.cpuset_cpus.clone(),
                },
                false,
            )
            .map_err(|e| SandboxError::Other(format!("the VMM's cgroup: {e}")))?;
        let tap = match net {
            Some(mut n) => Some((
                n.mac,
                match n.open.take() {
                    Some(f) => f,
                    None => super::devices::virtio::net::open_tap(&n.tap)?,
                },
            )),
            None => None,
        };
        let setup = Setup {
            kernel: cfg.kernel.clone(),
            initrd: Some(cfg.initrd.clone()),
            cmdline: format!("twinbox.port={}", protocol::AGENT_PORT),
            mem_bytes,
            vcpus,
            disks: Vec::new(),
            shares: cfg.shares.iter().map(|s| s.tag.clone()).collect(),
            net_mac: tap.as_ref().map(|t| t.0),
            vsock_cid: Some(GUEST_CID),
            quiet: true,
            jail: JailSpec {
                dir: jail_dir,
                uid: jail_id.id,
                gid: jail_id.id,
            },
            cpus: cpus.map(|c| c.into_iter().collect()),
            parent: 0,
        };
        let cgroup = VmmCgroup(cgroup);
        let exe = std::path::Path::new("/proc/self/exe");
        let vm = VmProcess::spawn(
            exe,
            setup,
            jail_id,
            console,
            tap.map(|t| t.1),
            share_streams,
            &|pid| {
                cgroup
                    .0
                    .add(pid)
                    .map_err(|e| VmmError::Jail(format!("the VMM's cgroup: {e}")))
            },
        )
        .map_err(jail_err)?;
        if let Some(f) = &cfg.trace {
            for (name, d) in &vm.boot.steps {
                f(name, *d);
            }
        }
        let setup_ms = vm.boot.setup().as_secs_f64() * 1e3;

        // Wait for the agent to call home, or for the VM to die trying.
        let deadline = Instant::now() + AGENT_TIMEOUT;
        let stream = loop {
            match listener.accept() {
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
        drop(listener);
        let _ = std::fs::remove_file(&agent_path);
        stream.set_nonblocking(false)?;
        let mut reader = stream.try_clone()?;
        let ready = protocol::read_frame(&mut reader)?
            .ok_or_else(|| SandboxError::Other("the agent hung up".into()))?;
        let kernel = match protocol::parse_json::<AgentMsg>(&ready.2)? {
            AgentMsg::Ready { version, kernel } if version == protocol::VERSION => kernel,
            AgentMsg::Ready { version, .. } => {
                vm.power_off();
                return Err(SandboxError::Other(format!(
                    "the guest agent speaks protocol {version}, this twinbox {}: rebuild the agent initramfs",
                    protocol::VERSION
                )));
            }
            other => {
                vm.power_off();
                return Err(SandboxError::Other(format!(
                    "unexpected agent greeting: {other:?}"
                )));
            }
        };
        let boot_ms = vm.boot.guest_boot().map(|d| d.as_secs_f64() * 1e3);
        let trace = |step: &str, d: Duration| {
            if let Some(f) = &cfg.trace {
                f(step, d);
            }
        };
        let agent_at = *vm.boot.agent.lock().unwrap_or_else(|e| e.into_inner());
        match agent_at {
            Some(at) => {
                trace(
                    "boot to agent",
                    at.saturating_duration_since(vm.boot.first_run),
                );
                trace("agent connect", accepted.saturating_duration_since(at));
            }
            None => trace(
                "boot to agent",
                accepted.saturating_duration_since(vm.boot.first_run),
            ),
        }
        let t_start = Instant::now();

        let conn = Arc::new(Conn {
            writer: Mutex::new(stream),
            routes: Mutex::new(HashMap::new()),
            next: AtomicU32::new(1),
            closed: Mutex::new(false),
            closed_cv: Condvar::new(),
        });
        {
            let c = conn.clone();
            std::thread::spawn(move || c.dispatch(reader));
        }
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
        trace("start workload", t_start.elapsed());
        if let Some(r) = in_r {
            forward_stdin(conn.clone(), 0, r);
        }
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

    fn request(&self, msg: HostMsg) -> Result<Receiver<AgentMsg>, SandboxError> {
        let id = self.conn.next.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = channel();
        self.conn.route(id, Route::Control(tx));
        self.conn.send(id, &msg)?;
        Ok(rx)
    }
}

fn vm_died(end: &VmEnd, console: &std::path::Path) -> SandboxError {
    match end {
        VmEnd::InternalError { .. } if super::is_pvm_host() => {
            SandboxError::Unsupported(VmmError::PvmHost.to_string())
        }
        other => SandboxError::Other(format!(
            "the microVM stopped before its agent started ({other:?}); see {}",
            console.display()
        )),
    }
}

impl Sandbox for VmSandbox {
    fn pid(&self) -> i32 {
        self.vm.pid()
    }

    fn wait(&self) -> ExitInfo {
        let rx = self.main.lock().unwrap_or_else(|e| e.into_inner());
        let info = loop {
            match rx.recv() {
                Ok(AgentMsg::Exited { code, oom_killed }) => break ExitInfo { code, oom_killed },
                Ok(_) => {}
                // The agent's connection ended without an exit: the VM died or was
                // powered off.
                Err(_) => {
                    break self
                        .exit
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .unwrap_or(ExitInfo {
                            code: 137,
                            oom_killed: false,
                        })
                }
            }
        };
        *self.exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
        let _ = self.conn.send(0, &HostMsg::Bye);
        if self.vm.wait(Some(Duration::from_secs(5))).is_none() {
            self.vm.power_off();
            let _ = self.vm.wait(Some(Duration::from_secs(5)));
        }
        info
    }

    fn signal(&self, sig: i32) -> Result<(), SandboxError> {
        self.conn.send(0, &HostMsg::Signal { signal: sig })?;
        Ok(())
    }

    fn kill(&self) -> Result<(), SandboxError> {
        // First through the agent: SIGKILL the workload, so the guest syncs its disks
        // and powers off by itself (files written before a stop survive a restart, as
        // with Docker). Only a guest that does not answer is powered off hard.
        self.vm.resume();
        if self
            .conn
            .send(
                0,
                &HostMsg::Signal {
                    signal: libc::SIGKILL,
                },
            )
            .is_ok()
        {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if self
                    .exit
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some()
                    || *self.conn.closed.lock().unwrap_or_else(|e| e.into_inner())
                {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        {
            let mut g = self.exit.lock().unwrap_or_else(|e| e.into_inner());
            if g.is_none() {
                *g = Some(ExitInfo {
                    code: 137,
                    oom_killed: false,
                });
            }
        }
        self.vm.power_off();
        // Closing our side ends the dispatcher, which ends `wait`.
        let w = self.conn.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = w.shutdown(std::net::Shutdown::Both);
        Ok(())
    }

    fn pause(&self) -> Result<(), SandboxError> {
        self.vm
            .pause()
            .map_err(|e| SandboxError::Other(e.to_string()))
    }

    fn resume(&self) -> Result<(), SandboxError> {
        self.vm.resume();
        Ok(())
    }

    fn resize(&self, rows: u16, cols: u16) {
        let _ = self.conn.send(0, &HostMsg::Resize { rows, cols });
    }

    fn exec(&self, p: &crate::spec::ProcessSpec) -> Result<Box<dyn ExecProcess>, SandboxError> {
        let id = self.conn.next.fetch_add(1, Ordering::SeqCst);
        let (io, out_w, err_w, in_r) = stdio_pipes(p.tty, p.stdin)?;
        let (tx, rx) = channel();
        self.conn.route(
            id,
            Route::Process {
                stdout: Some(out_w),
                stderr: err_w,
                control: tx,
            },
        );
        self.conn.send(id, &HostMsg::Exec { process: p.clone() })?;
        let arg0 = p.args.first().cloned().unwrap_or_default();
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(AgentMsg::Started { .. }) => {}
            Ok(other) => return Err(start_failure(other, &arg0)),
            Err(_) => return Err(SandboxError::Other("the guest agent did not answer".into())),
        }
        if let Some(r) = in_r {
            forward_stdin(self.conn.clone(), id, r);
        }
        Ok(Box::new(VmExec {
            io: Some(io),
            rx: Mutex::new(rx),
            conn: self.conn.clone(),
            stream: id,
        }))
    }

    fn copy_out(&self, path: &str, out: &mut (dyn Write + Send)) -> Result<(), SandboxError> {
        let id = self.conn.next.fetch_add(1, Ordering::SeqCst);
        let (dtx, drx) = channel();
        let (ctx, crx) = channel();
        self.conn.route(
            id,
            Route::Copy {
                data: Some(dtx),
                control: ctx,
            },
        );
        self.conn
            .send(id, &HostMsg::CopyOut { path: path.into() })?;
        while let Ok(chunk) = drx.recv() {
            out.write_all(&chunk)?;
        }
        match crx.recv_timeout(Duration::from_secs(60)) {
            Ok(AgentMsg::CopyDone) => Ok(()),
            Ok(AgentMsg::CopyFailed { message }) => Err(SandboxError::Other(message)),
            _ => Err(SandboxError::Other(
                "the guest agent did not finish the copy".into(),
            )),
        }
    }

    fn copy_in(&self, path: &str, input: &mut (dyn Read + Send)) -> Result<(), SandboxError> {
        let id = self.conn.next.fetch_add(1, Ordering::SeqCst);
        let (ctx, crx) = channel();
        self.conn.route(
            id,
            Route::Copy {
                data: None,
                control: ctx,
            },
        );
        self.conn.send(id, &HostMsg::CopyIn { path: path.into() })?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.conn.send_data(Kind::Data, id, &buf[..n])?;
        }
        self.conn.send_data(Kind::DataEof, id, &[])?;
        match crx.recv_timeout(Duration::from_secs(60)) {
            Ok(AgentMsg::CopyDone) => Ok(()),
            Ok(AgentMsg::CopyFailed { message }) => Err(SandboxError::Other(message)),
            _ => Err(SandboxError::Other(
                "the guest agent did not finish the copy".into(),
            )),
        }
    }

    fn top(&self) -> Result<Vec<TopRow>, SandboxError> {
        let rx = self.request(HostMsg::Top)?;
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(AgentMsg::Top { rows }) => Ok(rows),
            _ => Err(SandboxError::Other("the guest agent did not answer".into())),
        }
    }

    fn stats(&self) -> Result<SandboxStats, SandboxError> {
        // Host view: the VMM process is what the microVM costs the host.
        if self.vm.exited() {
            return Err(SandboxError::Other("the VMM has exited".into()));
        }
        let me = self.vm.pid();
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat"))?;
        let st = crate::util::proc::parse_stat(&stat)
            .ok_or_else(|| SandboxError::Other("cannot read /proc/self/stat".into()))?;
        let tps = crate::util::proc::ticks_per_second();
        let rss = crate::util::proc::rss_bytes(me).unwrap_or(0);
        Ok(SandboxStats {
            memory_bytes: rss,
            memory_peak: rss,
            memory_limit: Some(self.mem_bytes),
            cpu_usage_ns: (st.utime + st.stime) * 1_000_000_000 / tps,
            pids: self.vm.vcpu_count() as u64,
        })
    }

    fn guest_memory(&self) -> Option<(u64, u64)> {
        Some((self.mem_bytes, self.vm.guest_resident()))
    }

    fn cleanup(&self) {
        self.vm.stop();
        self.fsd.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let _ = self.cgroup.0.kill_all();
        let _ = self.cgroup.0.destroy();
        let _ = crate::util::fs::remove_dir_all_if_exists(&self.run_dir.join("vmm"));
    }

    fn helper_max_rss(&self) -> u64 {
        self.vm.max_rss()
    }
}
