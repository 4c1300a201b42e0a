//! The guest agent: PID 1 of a twinbox microVM.
//!
//! It mounts the basics, marks the boot timer, connects to the host over vsock, and
//! then does what the host asks: build the container root (overlay of the read-only
//! image disk and the scratch disk), run the workload and `exec`s with their stdio
//! forwarded, deliver signals, copy files in and out, list processes. When the
//! workload ends it reports the exit status and powers the VM off.

use super::protocol::{self, AgentMsg, HostMsg, Kind};
use crate::init::mounts::{MountSource, PlannedMount};
use crate::init::reaper::Reaper;
use crate::init::rootfs::{self, RootfsPlan};
use crate::init::stdio::make_stdio;
use crate::init::{
    caps, fork_in, pipe, read_report, set_winsize, setup_to_error, workload, PidNs, SetupError,
};
use crate::sandbox::ExitInfo;
use crate::spec::{NetworkMode, ProcessSpec, SandboxSpec};
use nix::mount::{mount, MsFlags};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROOT: &str = "/mnt/root";

fn log(msg: &str) {
    // Goes to the serial console (the VM's console log), never to the workload's output.
    let _ = writeln!(io::stderr(), "twinbox-agent: {msg}");
}

/// The agent's entry point. Never returns: the VM powers off.
pub fn main() -> ! {
    if std::process::id() != 1 {
        eprintln!("twinbox-agent runs as PID 1 inside a twinbox microVM; it is not a host command");
        std::process::exit(2);
    }
    if let Err(e) = leave_initramfs().and_then(|_| run()) {
        log(&format!("fatal: {e}"));
    }
    power_off();
}

/// Marks the tmpfs root the agent moved onto.
const MOVED: &str = "/.twinbox-root";

/// The kernel unpacks the initramfs into `rootfs`, which pivot_root cannot leave, so a
/// workload could only be chrooted — and a chroot is left by anyone with
/// CAP_SYS_CHROOT. First thing, the agent moves onto a tmpfs root of its own (as
/// switch_root does) and starts again from there; a workload's root is then pivoted
/// into, and the agent's tree detached from its view.
fn leave_initramfs() -> io::Result<()> {
    if Path::new(MOVED).exists() {
        return Ok(());
    }
    let new = "/newroot";
    std::fs::create_dir_all(new)?;
    mount(
        Some("tmpfs"),
        new,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755"),
    )
    .map_err(io::Error::from)?;
    for d in ["dev", "proc", "sys", "run", "mnt", "tmp"] {
        std::fs::create_dir_all(Path::new(new).join(d))?;
    }
    std::fs::copy("/init", Path::new(new).join("init"))?;
    std::fs::write(Path::new(new).join(&MOVED[1..]), b"")?;
    // The old copy is no longer needed; its memory goes back.
    let _ = std::fs::remove_file("/init");
    nix::unistd::chdir(new).map_err(io::Error::from)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(io::Error::from)?;
    nix::unistd::chroot(".").map_err(io::Error::from)?;
    nix::unistd::chdir("/").map_err(io::Error::from)?;
    let init = std::ffi::CString::new("/init").unwrap_or_default();
    let e = nix::unistd::execv(&init, &[&init]).unwrap_err();
    Err(io::Error::from(e))
}

fn power_off() -> ! {
    nix::unistd::sync();
    // The guest has no ACPI: a reboot (reboot=t: triple fault) is how the VM ends.
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn early_mounts() -> io::Result<()> {
    let m = |src: &str, dst: &str, fs: &str, flags: MsFlags| -> io::Result<()> {
        std::fs::create_dir_all(dst)?;
        mount(Some(src), dst, Some(fs), flags, None::<&str>).map_err(io::Error::from)
    };
    let common = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    m("proc", "/proc", "proc", common)?;
    m("sysfs", "/sys", "sysfs", common)?;
    m("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID)?;
    m(
        "tmpfs",
        "/run",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
    )?;
    Ok(())
}

/// Tell the VMM's boot timer that userspace is running.
fn mark_boot_timer() {
    const PORT: u16 = 0x3f0;
    const MAGIC: u8 = 123;
    // SAFETY: ioperm only changes this thread's I/O permission bitmap.
    if unsafe { libc::ioperm(libc::c_ulong::from(PORT), 1, 1) } == 0 {
        // SAFETY: ioperm granted this thread access to the port, which the VMM owns
        // (the boot timer); the instruction touches no memory.
        unsafe {
            std::arch::asm!("out dx, al", in("dx") PORT, in("al") MAGIC, options(nomem, nostack, preserves_flags));
        }
    } else {
        log("ioperm failed: no boot-timer mark");
    }
}

fn cmdline_value(key: &str) -> Option<String> {
    let c = std::fs::read_to_string("/proc/cmdline").ok()?;
    c.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")).map(String::from))
}

fn oom_kills() -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn run() -> io::Result<()> {
    early_mounts()?;
    mark_boot_timer();
    let port = cmdline_value("twinbox.port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(protocol::AGENT_PORT);
    let mut conn = None;
    for _ in 0..100 {
        match super::vsock::connect(libc::VMADDR_CID_HOST, port) {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let conn = conn.ok_or_else(|| io::Error::other("cannot reach the host over vsock"))?;
    let agent = Arc::new(Agent {
        out: Mutex::new(conn.try_clone()?),
        procs: Mutex::new(HashMap::new()),
        copies: Mutex::new(HashMap::new()),
        reaper: Reaper::start(),
        cap_last: caps::last_cap(),
        confinement: Mutex::default(),
        oom_base: oom_kills(),
        workload: Mutex::new(None),
    });
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    agent.send(
        0,
        &AgentMsg::Ready {
            version: protocol::VERSION,
            kernel,
        },
    )?;
    agent.serve(conn)
}

struct Proc {
    pid: i32,
    stdin: Option<File>,
    master: Option<OwnedFd>,
}

struct Agent {
    out: Mutex<File>,
    procs: Mutex<HashMap<u32, Proc>>,
    /// Copy-in streams: where their data goes.
    copies: Mutex<HashMap<u32, File>>,
    reaper: Reaper,
    cap_last: u32,
    /// The container's confinement, from the start message; execs get the same.
    confinement: Mutex<crate::init::confine::Confinement>,
    oom_base: u64,
    workload: Mutex<Option<i32>>,
}

impl Agent {
    fn send(&self, stream: u32, msg: &AgentMsg) -> io::Result<()> {
        let mut g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        protocol::write_json(&mut *g, stream, msg)
    }

    fn send_data(&self, kind: Kind, stream: u32, data: &[u8]) -> io::Result<()> {
        let mut g = self.out.lock().unwrap_or_else(|e| e.into_inner());
        protocol::write_frame(&mut *g, kind, stream, data)
    }

    fn serve(self: &Arc<Self>, mut conn: File) -> io::Result<()> {
        loop {
            let Some((kind, stream, payload)) = protocol::read_frame(&mut conn)? else {
                return Ok(());
            };
            match kind {
                Kind::Json => {
                    let msg: HostMsg = protocol::parse_json(&payload)?;
                    if msg == HostMsg::Bye {
                        return Ok(());
                    }
                    self.handle(stream, msg);
                }
                Kind::Stdin => {
                    let mut g = self.procs.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(f) = g.get_mut(&stream).and_then(|p| p.stdin.as_mut()) {
                        let _ = f.write_all(&payload);
                    }
                }
                Kind::StdinEof => {
                    let mut g = self.procs.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(p) = g.get_mut(&stream) {
                        p.stdin = None;
                    }
                }
                Kind::Data => {
                    let mut g = self.copies.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(f) = g.get_mut(&stream) {
                        let _ = f.write_all(&payload);
                    }
                }
                Kind::DataEof => {
                    self.copies
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&stream);
                }
                _ => {}
            }
        }
    }

    fn handle(self: &Arc<Self>, stream: u32, msg: HostMsg) {
        match msg {
            HostMsg::Start {
                spec,
                etc,
                confinement,
            } => {
                *self.confinement.lock().unwrap_or_else(|e| e.into_inner()) = confinement;
                if let Err(e) = setup_root(&spec, &etc) {
                    let _ = self.send(
                        stream,
                        &AgentMsg::Failed {
                            message: format!(
                                "preparing the container root: {} ({})",
                                e.step,
                                io::Error::from_raw_os_error(e.errno)
                            ),
                            code: 125,
                        },
                    );
                    return;
                }
                self.spawn(stream, &spec.process, true);
            }
            HostMsg::Exec { process } => self.spawn(stream, &process, false),
            HostMsg::Signal { signal } => {
                if let Some(p) = self
                    .procs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&stream)
                {
                    // SAFETY: kill(2) on a child we started; no memory involved.
                    unsafe { libc::kill(p.pid, signal) };
                }
            }
            HostMsg::Resize { rows, cols } => {
                if let Some(m) = self
                    .procs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&stream)
                    .and_then(|p| p.master.as_ref())
                {
                    set_winsize(m, rows, cols);
                }
            }
            HostMsg::Top => {
                let ns = self
                    .workload_pid()
                    .and_then(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok());
                let rows = top_rows(ns.as_deref());
                let _ = self.send(stream, &AgentMsg::Top { rows });
            }
            HostMsg::CopyOut { path } => {
                let me = self.clone();
                std::thread::spawn(move || me.copy_out(stream, &path));
            }
            HostMsg::CopyIn { path } => self.copy_in(stream, path),
            HostMsg::Bye => {}
        }
    }

    /// Start a process in the container root and stream its stdio on `stream`.
    fn spawn(self: &Arc<Self>, stream: u32, p: &ProcessSpec, is_workload: bool) {
        match self.try_spawn(stream, p, is_workload) {
            Err(e) => {
                let _ = self.send(
                    stream,
                    &AgentMsg::Failed {
                        message: crate::util::error_chain(&e),
                        code: e.exit_code(),
                    },
                );
                if is_workload {
                    schedule_power_off(Duration::from_secs(3));
                }
            }
            Ok((pid, io, rx)) => {
                let _ = self.send(stream, &AgentMsg::Started { pid });
                let mut pumps = Vec::new();
                for (file, kind) in [(Some(io.stdout), Kind::Stdout), (io.stderr, Kind::Stderr)] {
                    let Some(mut f) = file else { continue };
                    let me = self.clone();
                    pumps.push(std::thread::spawn(move || {
                        let mut buf = vec![0u8; 32 * 1024];
                        loop {
                            match f.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if me.send_data(kind, stream, &buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    }));
                }
                let me = self.clone();
                std::thread::spawn(move || {
                    let status = rx.recv().unwrap_or(255 << 8);
                    let (tx, done) = std::sync::mpsc::channel();
                    std::thread::spawn(move || {
                        for p in pumps {
                            let _ = p.join();
                        }
                        let _ = tx.send(());
                    });
                    let _ = done.recv_timeout(Duration::from_secs(2));
                    me.procs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&stream);
                    let info = ExitInfo::from_wait_status(status);
                    let oom_killed = is_workload && oom_kills() > me.oom_base;
                    let _ = me.send(
                        stream,
                        &AgentMsg::Exited {
                            code: info.code,
                            oom_killed,
                        },
                    );
                    if is_workload {
                        // The host answers Bye; if it does not, power off anyway.
                        schedule_power_off(Duration::from_secs(3));
                    }
                });
            }
        }
    }

    /// The workload's pid, while it runs.
    fn workload_pid(&self) -> Option<i32> {
        *self.workload.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The workload's namespace file `kind` (pid, mnt), while it runs.
    fn workload_ns(&self, kind: &str) -> Option<File> {
        self.workload_pid()
            .and_then(|pid| File::open(format!("/proc/{pid}/ns/{kind}")).ok())
    }

    #[allow(clippy::type_complexity)]
    fn try_spawn(
        self: &Arc<Self>,
        stream: u32,
        p: &ProcessSpec,
        is_workload: bool,
    ) -> Result<
        (
            i32,
            crate::sandbox::WorkloadIo,
            std::sync::mpsc::Receiver<i32>,
        ),
        crate::sandbox::SandboxError,
    > {
        let (host_stdio, child_stdio) = make_stdio(p)?;
        let (rep_r, rep_w) = pipe()?;
        let cap_last = self.cap_last;
        let conf = self
            .confinement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // The workload is PID 1 of a new pid namespace with its own /proc, as under
        // Docker; an exec joins its namespaces.
        let (ns, mnt) = if is_workload {
            (PidNs::New, None)
        } else {
            match (self.workload_ns("pid"), self.workload_ns("mnt")) {
                (Some(pid), Some(mnt)) => (PidNs::Join(pid), Some(mnt)),
                _ => (PidNs::Inherit, None),
            }
        };
        let pid = fork_in(ns, move || {
            let e = match enter_container(is_workload, mnt.as_ref()) {
                Err(e) => e,
                Ok(()) => workload::exec_workload(p, child_stdio, &conf, cap_last, false, false),
            };
            workload::report(rep_w.as_raw_fd(), &e);
            126
        })?;
        self.reaper.forked();
        let rx = self.reaper.subscribe(pid);
        let stdio = host_stdio.finish();
        if let Some(e) = read_report(rep_r) {
            let _ = rx.recv();
            return Err(setup_to_error(
                e,
                p.args.first().map(|s| s.as_str()).unwrap_or(""),
            ));
        }
        let (mut io, master) = stdio?;
        if is_workload {
            *self.workload.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
        }
        self.procs.lock().unwrap_or_else(|e| e.into_inner()).insert(
            stream,
            Proc {
                pid,
                stdin: io.stdin.take(),
                master,
            },
        );
        Ok((pid, io, rx))
    }

    /// Run `f` in a child inside the container (its mount namespace and root), with
    /// pipes to and from it.
    fn in_root<F>(&self, f: F) -> io::Result<(i32, Option<File>, Option<File>, File)>
    where
        F: FnOnce(&mut dyn Read, &mut dyn Write) -> io::Result<()> + Send,
    {
        let (in_r, in_w) = pipe().map_err(io::Error::other)?;
        let (out_r, out_w) = pipe().map_err(io::Error::other)?;
        let (err_r, err_w) = pipe().map_err(io::Error::other)?;
        let mnt = self.workload_ns("mnt");
        let in_w_fd = in_w.as_raw_fd();
        let out_r_fd = out_r.as_raw_fd();
        let err_r_fd = err_r.as_raw_fd();
        let pid = fork_in(PidNs::Inherit, move || {
            // The parent's ends must not stay open here.
            for fd in [in_w_fd, out_r_fd, err_r_fd] {
                // SAFETY: closing this child's copies of the parent's fds.
                unsafe { libc::close(fd) };
            }
            let (mut r, mut w, mut ew) = (in_r, out_w, err_w);
            let res = enter_container(false, mnt.as_ref())
                .map_err(|e| io::Error::from_raw_os_error(e.errno))
                .and_then(|_| f(&mut r, &mut w));
            match res {
                Ok(()) => 0,
                Err(e) => {
                    let _ = write!(ew, "{e}");
                    1
                }
            }
        })
        .map_err(io::Error::other)?;
        self.reaper.forked();
        Ok((pid, Some(in_w), Some(out_r), err_r))
    }

    fn finish_copy(&self, stream: u32, pid: i32, mut err_r: File) {
        let rx = self.reaper.subscribe(pid);
        let status = rx.recv().unwrap_or(1 << 8);
        let mut msg = String::new();
        let _ = err_r.read_to_string(&mut msg);
        let reply = if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            AgentMsg::CopyDone
        } else {
            AgentMsg::CopyFailed {
                message: if msg.is_empty() {
                    "copy failed".into()
                } else {
                    msg
                },
            }
        };
        let _ = self.send(stream, &reply);
    }

    fn copy_out(&self, stream: u32, path: &str) {
        let path = path.to_string();
        match self.in_root(move |_, w| crate::cptar::pack(crate::cptar::Side::Container, &path, w))
        {
            Err(e) => {
                let _ = self.send(
                    stream,
                    &AgentMsg::CopyFailed {
                        message: e.to_string(),
                    },
                );
            }
            Ok((pid, in_w, out_r, err_r)) => {
                drop(in_w);
                if let Some(mut r) = out_r {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = r.read(&mut buf) {
                        if n == 0 || self.send_data(Kind::Data, stream, &buf[..n]).is_err() {
                            break;
                        }
                    }
                }
                let _ = self.send_data(Kind::DataEof, stream, &[]);
                self.finish_copy(stream, pid, err_r);
            }
        }
    }

    fn copy_in(self: &Arc<Self>, stream: u32, path: String) {
        let dest = path;
        match self.in_root(move |r, _| {
            crate::cptar::extract(crate::cptar::Side::Container, r, &dest, None)
        }) {
            Err(e) => {
                let _ = self.send(
                    stream,
                    &AgentMsg::CopyFailed {
                        message: e.to_string(),
                    },
                );
            }
            Ok((pid, in_w, out_r, err_r)) => {
                drop(out_r);
                if let Some(w) = in_w {
                    self.copies
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(stream, w);
                }
                let me = self.clone();
                std::thread::spawn(move || me.finish_copy(stream, pid, err_r));
            }
        }
    }
}

fn schedule_power_off(after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        power_off();
    });
}

/// In a forked child: enter the container. The workload gets a new mount namespace
/// with a /proc of its new pid namespace, and pivots into the container's root;
/// others join the workload's mount namespace (whose root that is).
fn enter_container(is_workload: bool, mnt: Option<&File>) -> Result<(), SetupError> {
    if is_workload {
        crate::util::fs::private_mount_namespace(nix::sched::CloneFlags::empty())
            .map_err(|e| SetupError::new("mount namespace", io::Error::from(e)))?;
        let proc_dir = format!("{ROOT}/proc");
        mount(
            Some("proc"),
            proc_dir.as_str(),
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| SetupError::new("mount /proc", io::Error::from(e)))?;
        rootfs::mask_and_protect(Path::new(ROOT))?;
        // Into the container's root, the agent's detached: nothing of the guest's own
        // tree stays reachable from the workload, with or without CAP_SYS_CHROOT.
        return rootfs::pivot(Path::new(ROOT));
    }
    match mnt {
        // The workload's namespace: its root is the container's.
        Some(m) => nix::sched::setns(m, nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| SetupError::new("enter the mount namespace", io::Error::from(e))),
        None => Err(SetupError::new(
            "enter the container",
            io::Error::other("its workload is gone"),
        )),
    }
}

/// The container's mounts as the guest makes them: volumes and binds are virtio-fs
/// shares, tagged in order; tmpfs is the guest's own.
fn guest_mounts(mounts: &[crate::spec::Mount]) -> Vec<PlannedMount> {
    use crate::spec::MountKind;
    let mut k = 0;
    mounts
        .iter()
        .map(|m| PlannedMount {
            source: match m.kind {
                MountKind::Tmpfs => MountSource::Tmpfs {
                    size: m.tmpfs_size,
                    mode: m.tmpfs_mode,
                    exec: m.tmpfs_exec,
                },
                MountKind::Volume | MountKind::Bind => {
                    k += 1;
                    MountSource::Filesystem {
                        source: crate::volume::vm::share_tag(k - 1),
                        fstype: "virtiofs".into(),
                    }
                }
            },
            target: m.target.clone(),
            readonly: m.readonly,
            copy_up: m.kind == MountKind::Volume && !m.nocopy,
            kind_volume: false,
        })
        .collect()
}

/// Build the container root: the host's overlay of the image's layers and the
/// container's writable layer, shared over virtio-fs; then its mounts.
fn setup_root(spec: &SandboxSpec, etc: &[(String, String)]) -> Result<(), SetupError> {
    let mk =
        |p: &str| std::fs::create_dir_all(p).map_err(|e| SetupError::new(format!("mkdir {p}"), e));
    for d in [ROOT, "/run/twinbox-etc"] {
        mk(d)?;
    }
    let mut etc_files = Vec::new();
    for (dest, content) in etc {
        let name = Path::new(dest)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let src = PathBuf::from("/run/twinbox-etc").join(&name);
        std::fs::write(&src, content).map_err(|e| SetupError::new("write /etc files", e))?;
        let dest: &'static str = match name.as_str() {
            "hostname" => "/etc/hostname",
            "hosts" => "/etc/hosts",
            "resolv.conf" => "/etc/resolv.conf",
            _ => continue,
        };
        etc_files.push((src, dest));
    }
    let plan = RootfsPlan {
        root_fs: Some((protocol::ROOT_SHARE.into(), "virtiofs".into())),
        lower: Vec::new(),
        upper: PathBuf::new(),
        work: PathBuf::new(),
        target: PathBuf::from(ROOT),
        etc_files,
        mounts: guest_mounts(&spec.mounts),
        privileged: spec.security.privileged,
        read_only: spec.security.read_only,
    };
    rootfs::mount_all(&plan, None)?;
    if !spec.security.privileged && !spec.security.unmask_system_paths {
        rootfs::mask_and_protect(Path::new(ROOT))?;
    }
    nix::unistd::sethostname(&spec.hostname)
        .map_err(|e| SetupError::new("sethostname", io::Error::from(e)))?;
    workload::loopback_up()?;
    if spec.network == NetworkMode::Bridge {
        super::net::configure(spec)?;
    }
    Ok(())
}

/// The processes in pid namespace `ns` (every guest process but the agent and kernel
/// threads if None).
fn top_rows(ns: Option<&Path>) -> Vec<crate::sandbox::TopRow> {
    let pids: Vec<i32> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
                .filter(|p| *p > 1)
                .filter(|p| {
                    std::fs::read(format!("/proc/{p}/cmdline"))
                        .map(|c| !c.is_empty())
                        .unwrap_or(false)
                })
                .filter(|p| match ns {
                    Some(ns) => std::fs::read_link(format!("/proc/{p}/ns/pid"))
                        .map(|l| l == ns)
                        .unwrap_or(false),
                    None => true,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut pids = pids;
    pids.sort();
    crate::util::proc::top_rows(&pids)
}
