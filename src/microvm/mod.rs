//! The vm backend as the monitor sees it: a microVM plus a conversation with its guest
//! agent over vsock, behind the same `Sandbox` trait as the process backend. The VMM
//! itself (`crate::vmm`) knows nothing of containers: this backend turns a container's
//! spec into a VM configuration, its shares into virtiofsd daemons, and its lifecycle
//! into messages for the guest agent.

mod conn;
mod start;
pub mod virtiofsd;

use crate::guest::protocol::{AgentMsg, HostMsg, Kind};
use crate::sandbox::{
    ExecProcess, ExitInfo, Sandbox, SandboxError, SandboxStats, TopRow, WorkloadIo,
};
use crate::spec::SandboxSpec;
use crate::vmm::process::VmProcess;
use conn::{forward_stdin, start_failure, stdio_pipes, Conn, Route};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
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

/// Everything the vm backend needs to start a container.
pub struct VmStart {
    /// The container's id: its VMM's cgroup and identity are keyed by it.
    pub id: String,
    pub spec: SandboxSpec,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Directories shared over virtio-fs (the root first, then volumes and bind
    /// mounts), each served by its own virtiofsd.
    pub shares: Vec<virtiofsd::ShareSpec>,
    /// Directory for the vsock sockets.
    pub run_dir: PathBuf,
    /// Where the guest's serial console goes (kernel log).
    pub console_log: PathBuf,
    /// /etc/hostname, /etc/hosts, /etc/resolv.conf for the guest.
    pub etc: Vec<(String, String)>,
    /// The network interface (a TAP on a twinbox bridge), if any.
    pub net: Option<crate::vmm::VmNet>,
    /// Answers the guest agent's DNS relay (vsock port `protocol::DNS_PORT`).
    pub dns: Option<Arc<dyn crate::network::dns::Resolver>>,
    pub trace: Option<crate::sandbox::Trace>,
    /// Capabilities, no_new_privs and seccomp, applied by the agent in the guest.
    pub confinement: crate::init::confine::Confinement,
}

impl std::fmt::Debug for VmStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmStart").finish_non_exhaustive()
    }
}

impl VmStart {
    fn trace(&self, phase: crate::phase::Phase, d: Duration) {
        if let Some(f) = &self.trace {
            f(phase, d);
        }
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
    fsd: Mutex<Vec<virtiofsd::Virtiofsd>>,
    /// Guest boot time (first KVM_RUN to the agent's boot-timer write).
    pub boot_ms: Option<f64>,
    pub setup_ms: f64,
    pub agent_kernel: String,
}

impl std::fmt::Debug for VmSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmSandbox").finish_non_exhaustive()
    }
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
    fn request(&self, msg: HostMsg) -> Result<Receiver<AgentMsg>, SandboxError> {
        let id = self.conn.next.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = channel();
        self.conn.route(id, Route::Control(tx));
        self.conn.send(id, &msg)?;
        Ok(rx)
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
