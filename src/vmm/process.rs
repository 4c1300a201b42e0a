//! A container's VMM as a process of its own. The monitor (the privileged control
//! plane: logs, DNS relay, state records, cgroups) starts it, hands it the VM's
//! description and the descriptors it cannot open itself, and drives it over a
//! control socket; the VMM builds the VM, enters its jail (`jail.rs`), confines each
//! thread (`filters.rs`) and only then runs the guest. [`VmProcess`] offers the monitor
//! what [`super::Vm`] offers in-process: wait, power off, pause, resume, memory.
//!
//! Control messages are JSON lines. Descriptors: 3 the control socket, 4 the console
//! (also the VMM's stderr), 5 the TAP if there is one, 6 /dev/kvm (the VMM's cgroup
//! lets it open no device).

use super::jail::{JailId, JailSpec};
use super::{BootTimes, VmDisk, VmEnd, VmmError};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// argv[0] of the VMM process (and its process name).
pub const ARG0: &str = "twinbox-vmm";
pub(crate) const CONTROL_FD: RawFd = 3;
pub(crate) const CONSOLE_FD: RawFd = 4;
pub(crate) const TAP_FD: RawFd = 5;
pub(crate) const KVM_FD: RawFd = 6;
/// The virtio-fs back ends' connections: descriptors 7, 8, … in `Setup.shares` order.
pub(crate) const SHARE_FD_BASE: RawFd = 7;
/// The longest control line the monitor reads from a VMM (a compromised VMM could
/// otherwise make it buffer without end).
const MAX_LINE: u64 = 64 << 10;
/// How long building the VM may take before the monitor gives up on it.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// What the VMM process builds.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Setup {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub mem_bytes: u64,
    pub vcpus: u8,
    pub disks: Vec<VmDisk>,
    /// virtio-fs mount tags; each one's vhost-user connection is descriptor
    /// SHARE_FD_BASE + its index.
    #[serde(default)]
    pub shares: Vec<String>,
    /// The NIC's MAC; its TAP is descriptor 5.
    pub net_mac: Option<[u8; 6]>,
    /// The guest's vsock CID; the sockets live in the jail directory as `v` and `v_P`.
    pub vsock_cid: Option<u64>,
    pub quiet: bool,
    pub jail: JailSpec,
    /// CPUs every VMM thread runs on (--cpuset-cpus).
    pub cpus: Option<Vec<usize>>,
    /// The monitor's pid (filled in by `spawn`): the VMM ends if its parent is not that.
    #[serde(default)]
    pub parent: i32,
}

/// The vsock socket prefix inside a jail directory.
pub const VSOCK_NAME: &str = "v";

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum ToVmm {
    Setup(Box<Setup>),
    PowerOff,
    Pause,
    Resume,
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum FromVmm {
    /// The VM runs. Set-up steps in ns; guest RAM's address ranges in the VMM.
    Started {
        steps: Vec<(crate::phase::Phase, u64)>,
        setup_ns: u64,
        ranges: Vec<(u64, u64)>,
    },
    Failed {
        error: String,
    },
    /// The agent wrote the boot-timer port this long after the first KVM_RUN.
    Agent {
        after_ns: u64,
    },
    Paused {
        error: Option<String>,
    },
    /// The VM ended; the VMM's peak RSS and guest RAM resident at the end (bytes).
    Ended {
        end: VmEnd,
        max_rss: u64,
        resident: u64,
    },
}

/// One line from a VMM, at most `MAX_LINE` bytes: None at the end, or for a longer one.
fn read_line(r: &mut BufReader<UnixStream>, line: &mut String) -> Option<()> {
    use std::io::Read;
    line.clear();
    match r.by_ref().take(MAX_LINE).read_line(line) {
        Ok(n) if n > 0 && line.ends_with('\n') => Some(()),
        _ => None,
    }
}

pub(crate) fn send<T: Serialize>(w: &mut impl Write, m: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(m).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)
}

#[derive(Default)]
struct State {
    end: Option<VmEnd>,
    /// (peak RSS, guest resident) as the VMM reported them at the end.
    last: Option<(u64, u64)>,
    paused: Option<Option<String>>,
    exited: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The monitor's handle on a running, jailed VMM process.
pub struct VmProcess {
    pid: i32,
    writer: Mutex<UnixStream>,
    shared: Arc<Shared>,
    ranges: Vec<(u64, u64)>,
    vcpus: usize,
    pub boot: BootTimes,
    /// The VMM's identity, let go once the VMM is gone.
    id: Mutex<Option<JailId>>,
}

impl std::fmt::Debug for VmProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmProcess").finish_non_exhaustive()
    }
}

/// Duplicate `fd` above the descriptors the child is given, so the dup2s into 3, 4
/// and 5 never overwrite a source before it is copied.
pub(crate) fn dup_high(fd: RawFd) -> std::io::Result<RawFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor the caller keeps open.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// What a VMM reported first: its set-up steps, their total and guest RAM's ranges.
type Started = (Vec<(crate::phase::Phase, u64)>, u64, Vec<(u64, u64)>);

/// The VMM's first line: started, or why not (`Err(None)`: it said nothing sensible).
fn await_started(
    reader: &mut BufReader<UnixStream>,
    line: &mut String,
) -> Result<Started, Option<VmmError>> {
    let first = read_line(reader, line).and_then(|_| serde_json::from_str::<FromVmm>(line).ok());
    match first {
        Some(FromVmm::Started {
            steps,
            setup_ns,
            ranges,
        }) => Ok((steps, setup_ns, ranges)),
        Some(FromVmm::Failed { error }) => Err(Some(VmmError::Reported(error))),
        _ => Err(None),
    }
}

/// Exec the VMM with its descriptors at the numbers it expects (control, console,
/// TAP, /dev/kvm, then one per share), nothing else, an empty environment, and a
/// parent-death signal.
fn launch(
    exe: &std::path::Path,
    theirs: UnixStream,
    console: &File,
    tap: Option<&File>,
    shares: Vec<UnixStream>,
) -> Result<Child, VmmError> {
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| VmmError::NoKvm(e.to_string()))?;
    let mut srcs = vec![
        Some(dup_high(theirs.as_raw_fd())?),
        Some(dup_high(console.as_raw_fd())?),
        match &tap {
            Some(t) => Some(dup_high(t.as_raw_fd())?),
            None => None,
        },
        Some(dup_high(kvm.as_raw_fd())?),
    ];
    let mut targets = vec![CONTROL_FD, CONSOLE_FD, TAP_FD, KVM_FD];
    for (k, s) in shares.iter().enumerate() {
        srcs.push(Some(dup_high(s.as_raw_fd())?));
        targets.push(SHARE_FD_BASE + k as RawFd);
    }
    let child_srcs = srcs.clone();
    let stderr = console.try_clone()?;
    let mut cmd = Command::new(exe);
    cmd.arg0(ARG0)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let parent = std::process::id() as i32;
    // SAFETY: between fork and exec only async-signal-safe calls: dup2, prctl,
    // getppid.
    unsafe {
        cmd.pre_exec(move || {
            for (target, src) in targets.iter().zip(&child_srcs) {
                if let Some(s) = *src {
                    if libc::dup2(s, *target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the monitor is gone"));
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    for s in srcs.into_iter().flatten() {
        // SAFETY: closing the duplicates made above, which nothing else uses.
        unsafe { libc::close(s) };
    }
    drop(theirs);
    drop(shares);
    spawned.map_err(|e| VmmError::Jail(format!("start the VMM: {e}")))
}

impl VmProcess {
    /// Start the VMM process (`exe`: the twinbox binary) for `setup`, placed (by `place`, with its pid) before it
    /// allocates anything — in its cgroup — and wait until its VM runs.
    pub fn spawn(
        exe: &std::path::Path,
        setup: Setup,
        id: JailId,
        console: File,
        tap: Option<File>,
        shares: Vec<UnixStream>,
        place: &dyn Fn(i32) -> Result<(), VmmError>,
    ) -> Result<VmProcess, VmmError> {
        if shares.len() != setup.shares.len() {
            return Err(VmmError::Config(
                "one connection per virtio-fs share".into(),
            ));
        }
        let (ours, theirs) = UnixStream::pair()?;
        let mut child = launch(exe, theirs, &console, tap.as_ref(), shares)?;
        let pid = child.id() as i32;
        let kill = |child: &mut Child| {
            let _ = child.kill();
            let _ = child.wait();
        };
        if let Err(e) = place(pid) {
            kill(&mut child);
            return Err(e);
        }
        let vcpus = usize::from(setup.vcpus);
        let mut setup = setup;
        setup.parent = std::process::id() as i32;
        let mut w = ours.try_clone()?;
        if let Err(e) = send(&mut w, &ToVmm::Setup(Box::new(setup))) {
            kill(&mut child);
            return Err(VmmError::Jail(format!("the VMM process: {e}")));
        }
        ours.set_read_timeout(Some(SETUP_TIMEOUT))?;
        let mut reader = BufReader::new(ours.try_clone()?);
        let mut line = String::new();
        let (steps, setup_ns, ranges) = match await_started(&mut reader, &mut line) {
            Ok(started) => started,
            Err(e) => {
                kill(&mut child);
                return Err(e.unwrap_or_else(|| {
                    let status = child
                        .try_wait()
                        .ok()
                        .flatten()
                        .map(|s| describe(&s))
                        .unwrap_or_else(|| "did not start".into());
                    VmmError::Jail(format!("the VMM process {status}"))
                }));
            }
        };
        ours.set_read_timeout(None)?;
        let first_run = Instant::now();
        let setup = Duration::from_nanos(setup_ns);
        let boot = BootTimes {
            start: first_run.checked_sub(setup).unwrap_or(first_run),
            steps: steps
                .into_iter()
                .map(|(n, d)| (n, Duration::from_nanos(d)))
                .collect(),
            first_run,
            agent: Arc::new(Mutex::new(None)),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        // From here the listener reaps it (std's handle is let go unreaped).
        drop(child);
        {
            let (shared, agent) = (shared.clone(), boot.agent.clone());
            std::thread::spawn(move || listen(reader, shared, pid, agent, first_run));
        }
        Ok(VmProcess {
            pid,
            writer: Mutex::new(ours),
            shared,
            ranges,
            vcpus,
            boot,
            id: Mutex::new(Some(id)),
        })
    }

    /// The VMM's pid on the host.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn command(&self, m: &ToVmm) -> bool {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        send(&mut *w, m).is_ok()
    }

    /// Block until the VM ends (or `timeout`); the same end every call after.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<VmEnd> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = self.shared.lock();
        loop {
            if let Some(e) = &g.end {
                return Some(e.clone());
            }
            g = match deadline {
                None => self.shared.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.shared
                        .cv
                        .wait_timeout(g, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    pub fn power_off(&self) {
        if !self.command(&ToVmm::PowerOff) {
            // The VMM no longer listens: end it.
            self.kill();
        }
    }

    /// SIGKILL the VMM unless it has been reaped (its pid could be another's then).
    fn kill(&self) {
        let g = self.shared.lock();
        if !g.exited {
            // SAFETY: kill(2) on our own child, not yet reaped (checked under the lock
            // the reaper takes).
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }

    /// Stop every vCPU; returns when all are parked.
    pub fn pause(&self) -> Result<(), VmmError> {
        self.shared.lock().paused = None;
        if !self.command(&ToVmm::Pause) {
            return Err(VmmError::Device("the VMM process is gone".into()));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut g = self.shared.lock();
        loop {
            if let Some(r) = g.paused.take() {
                return r.map_or(Ok(()), |e| Err(VmmError::Device(e)));
            }
            if g.exited {
                return Err(VmmError::Device("the VMM process is gone".into()));
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| VmmError::Device("the VMM did not answer".into()))?;
            g = self
                .shared
                .cv
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn resume(&self) {
        self.command(&ToVmm::Resume);
    }

    /// Bytes of guest RAM resident on the host (the VMM's smaps; at the end, as the
    /// VMM counted them).
    pub fn guest_resident(&self) -> u64 {
        {
            let g = self.shared.lock();
            if let Some((_, r)) = g.last {
                return r;
            }
            if g.exited {
                // Its pid may be another process's now.
                return 0;
            }
        }
        let smaps =
            std::fs::read_to_string(format!("/proc/{}/smaps", self.pid)).unwrap_or_default();
        super::vm::resident_in(&smaps, &self.ranges)
    }

    pub fn vcpu_count(&self) -> usize {
        self.vcpus
    }

    /// The VMM's peak RSS (as it reported at the end; while it runs, from /proc).
    pub fn max_rss(&self) -> u64 {
        {
            let g = self.shared.lock();
            if let Some((m, _)) = g.last {
                return m;
            }
            if g.exited {
                return 0;
            }
        }
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024)
    }

    /// Wait up to `t` for the VMM process to be reaped; whether it was.
    fn reaped_within(&self, t: Duration) -> bool {
        let deadline = Instant::now() + t;
        let mut g = self.shared.lock();
        while !g.exited && Instant::now() < deadline {
            g = self
                .shared
                .cv
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        g.exited
    }

    /// Power the VM off and make sure the VMM process is gone: whatever it reported,
    /// one that has not exited after the grace period is killed. Its identity is let
    /// go only once it is reaped (a VMM that outlived us keeps its uid to itself).
    pub fn stop(&self) {
        self.power_off();
        let _ = self.wait(Some(Duration::from_secs(5)));
        if !self.reaped_within(Duration::from_secs(3)) {
            self.kill();
        }
        let mut id = self.id.lock().unwrap_or_else(|e| e.into_inner());
        if self.reaped_within(Duration::from_secs(5)) {
            drop(id.take());
        } else if let Some(held) = id.take() {
            std::mem::forget(held);
        }
    }

    /// Whether the VMM process has exited (and been reaped).
    pub fn exited(&self) -> bool {
        self.shared.lock().exited
    }
}

impl Drop for VmProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn describe(s: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(super::filters::SECCOMP_EXIT), _) => {
            "was stopped by its seccomp filter (the refused syscall is in the console log)".into()
        }
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended".into(),
    }
}

/// The monitor's side of the control socket: events from the VMM, until it ends.
fn listen(
    mut reader: BufReader<UnixStream>,
    shared: Arc<Shared>,
    pid: i32,
    agent: Arc<Mutex<Option<Instant>>>,
    first_run: Instant,
) {
    let mut line = String::new();
    loop {
        if read_line(&mut reader, &mut line).is_none() {
            // The end, or a line no VMM writes: either way it is done.
            // SAFETY: kill(2) on our child, which only this thread reaps, below.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            break;
        }
        match serde_json::from_str::<FromVmm>(&line) {
            Ok(FromVmm::Agent { after_ns }) => {
                *agent.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(first_run + Duration::from_nanos(after_ns));
            }
            Ok(FromVmm::Paused { error }) => {
                shared.lock().paused = Some(error);
                shared.cv.notify_all();
            }
            Ok(FromVmm::Ended {
                end,
                max_rss,
                resident,
            }) => {
                // Words from a VMM a guest may control: kept short and printable.
                let end = match end {
                    VmEnd::Crashed(s) => {
                        VmEnd::Crashed(s.chars().take(200).flat_map(char::escape_default).collect())
                    }
                    other => other,
                };
                let mut g = shared.lock();
                g.end.get_or_insert(end);
                g.last = Some((max_rss, resident));
                drop(g);
                shared.cv.notify_all();
            }
            // Anything else from a VMM is a VMM gone wrong: it is stopped.
            _ => {
                // SAFETY: kill(2) on our child, which only this thread reaps, below.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break;
            }
        }
    }
    // Wait for the exit without reaping, then reap under the lock `kill` checks.
    // SAFETY: waitid on our own child with a zeroed siginfo it fills.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        );
    }
    let mut g = shared.lock();
    let mut raw = 0;
    // SAFETY: reaping our own child, whose exit waitid saw.
    let status = if unsafe { libc::waitpid(pid, &mut raw, 0) } == pid {
        use std::os::unix::process::ExitStatusExt;
        Ok(std::process::ExitStatus::from_raw(raw))
    } else {
        Err(())
    };
    g.exited = true;
    if g.end.is_none() {
        g.end = Some(VmEnd::Crashed(format!(
            "the VMM process {}",
            status
                .map(|s| describe(&s))
                .unwrap_or_else(|_| "ended".into())
        )));
    }
    drop(g);
    shared.cv.notify_all();
}
