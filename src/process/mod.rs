//! The process backend: OS-level virtualization with namespaces, cgroups, overlayfs
//! and pivot_root. The container shares the host kernel.
//!
//! Start-up, in the monitor process:
//! 1. cgroup created, limits written;
//! 2. clone() with new mount, uts, ipc, pid (and net) namespaces;
//! 3. the parent moves the child into the cgroup, then lets it go;
//! 4. the child: new cgroup namespace, overlay root, /proc /sys /dev, pivot_root,
//!    masked paths, hostname, lo, user, capabilities, no_new_privs, execve;
//! 5. a report pipe (close-on-exec) tells the parent whether execve happened.

pub mod cgroups;
pub mod exec_shim;
mod nsenter;
pub mod userns;

use crate::init::confine::Confinement;
use crate::init::reaper::Reaper;
use crate::init::rootfs::{self, RootfsPlan};
use crate::init::stdio::{make_stdio, ChildStdio};
use crate::init::{caps, pipe, read_report, setup_to_error, workload, SetupError};
use crate::phase::Phase;
use crate::sandbox::{
    ExecProcess, ExitInfo, Sandbox, SandboxError, SandboxStats, TopRow, WorkloadIo,
};
use crate::spec::{NetworkMode, ProcessSpec, SandboxSpec};
use cgroups::CgroupManager;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc::Receiver;
use std::sync::Mutex;
use std::time::Instant;

pub use crate::sandbox::Trace;

/// Everything the process backend needs to start a container.
pub struct ProcessStart {
    pub id: String,
    pub spec: SandboxSpec,
    pub rootfs: RootfsPlan,
    /// Called with (step, duration, explanation) as each step completes (`--explain`).
    pub trace: Option<Trace>,
    /// Run in the monitor with the child's pid once its namespaces exist and before it
    /// goes on: plugs its network interfaces in.
    pub net_hook: Option<NetHook>,
    /// Capabilities, no_new_privs and seccomp for the workload and every exec.
    pub confinement: Confinement,
}

impl std::fmt::Debug for ProcessStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessStart").finish_non_exhaustive()
    }
}

/// See `ProcessStart::net_hook`.
pub type NetHook = Box<dyn Fn(i32) -> Result<(), SandboxError> + Send + Sync>;

/// A running process container.
pub struct ProcessSandbox {
    pid: i32,
    cgroup: Box<dyn CgroupManager>,
    reaper: Reaper,
    exit_rx: Mutex<Option<Receiver<i32>>>,
    tty_master: Option<OwnedFd>,
    cap_last: u32,
    confinement: Confinement,
    /// `--userns remap`: exec and cp join its user namespace (and fail if they cannot).
    remapped: bool,
}

impl std::fmt::Debug for ProcessSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessSandbox").finish_non_exhaustive()
    }
}

impl ProcessSandbox {
    /// Create the container and exec its workload. On error nothing is left behind.
    pub fn start(cfg: ProcessStart) -> Result<(ProcessSandbox, WorkloadIo), SandboxError> {
        let t = Instant::now();
        let trace = |step: Phase, since: Instant| {
            if let Some(f) = &cfg.trace {
                f(step, since.elapsed());
            }
        };
        let cgroup = cgroups::manager(&cfg.id)?;
        if let Err(e) = cgroup.create(&cfg.spec.resources, cfg.spec.security.privileged) {
            let _ = cgroup.destroy();
            return Err(e.into());
        }
        trace(Phase::Cgroup, t);
        let result = Self::spawn(&cfg, cgroup.as_ref());
        match result {
            Ok((pid, io, master, reaper)) => {
                let exit_rx = reaper.subscribe(pid);
                Ok((
                    ProcessSandbox {
                        pid,
                        cgroup,
                        reaper,
                        exit_rx: Mutex::new(Some(exit_rx)),
                        tty_master: master,
                        cap_last: caps::last_cap(),
                        confinement: cfg.confinement.clone(),
                        remapped: cfg.spec.security.userns.is_some(),
                    },
                    io,
                ))
            }
            Err(e) => {
                let _ = cgroup.kill_all();
                let _ = cgroup.destroy();
                Err(e)
            }
        }
    }

    fn spawn(
        cfg: &ProcessStart,
        cgroup: &dyn CgroupManager,
    ) -> Result<(i32, WorkloadIo, Option<OwnedFd>, Reaper), SandboxError> {
        let trace = |step: Phase, d: std::time::Duration| {
            if let Some(f) = &cfg.trace {
                f(step, d);
            }
        };
        let p = &cfg.spec.process;
        let (host_stdio, child_stdio) = make_stdio(p)?;
        let (go_r, mut go_w) = pipe()?;
        let (rep_r, rep_w) = pipe()?;
        // The child timestamps its steps here (CLOCK_MONOTONIC), for --explain/compare.
        let (tim_r, tim_w) = pipe()?;
        let cap_last = caps::last_cap();
        let userns = remap_setup(cfg.spec.security.userns)?;
        let flags = clone_flags(&cfg.spec.network);
        let t_clone = Instant::now();
        // SAFETY: a fork-style clone (no CLONE_VM, no new stack): the child gets a copy of
        // this single-threaded process and continues below; the monitor starts no threads
        // before this point, so no lock can be held by a thread that does not exist in
        // the child.
        let pid =
            unsafe { crate::init::fork_with(flags) }.map_err(|source| SandboxError::Setup {
                step: "clone with new namespaces".into(),
                source,
            })?;
        if pid == 0 {
            drop(go_w);
            drop(rep_r);
            drop(tim_r);
            let remap = userns.map(|(map, fd, parent_ends, (ask, done))| {
                drop(parent_ends);
                ChildUserns {
                    map,
                    fd,
                    handshake: userns::Handshake { ask, done },
                }
            });
            let e = Self::child(cfg, go_r, child_stdio, cap_last, tim_w, remap);
            workload::report(rep_w.as_raw_fd(), &e);
            // SAFETY: leaving the forked child without running the parent's destructors.
            unsafe { libc::_exit(125) };
        }
        let pid = pid as i32;
        trace(Phase::Clone, t_clone.elapsed());
        let reaper = Reaper::start();
        reaper.forked();
        drop(go_r);
        drop(rep_w);
        drop(tim_w);
        drop(child_stdio);
        let fail = |e: SandboxError| {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            e
        };
        let t_join = Instant::now();
        cgroup.add(pid).map_err(|e| fail(e.into()))?;
        trace(Phase::CgroupJoin, t_join.elapsed());
        if let Some(hook) = &cfg.net_hook {
            let t_net = Instant::now();
            hook(pid).map_err(fail)?;
            trace(Phase::Network, t_net.elapsed());
        }
        let go_at = crate::util::clock::monotonic_ns();
        go_w.write_all(b"g").map_err(|e| fail(e.into()))?;
        drop(go_w);
        if let Some((map, fd, (ask, done), child_ends)) = userns {
            drop((fd, child_ends));
            // false: the child ended before asking; its report says why.
            userns::serve(pid, &map, ask, done).map_err(|e| {
                fail(SandboxError::Setup {
                    step: "write the user namespace maps".into(),
                    source: e,
                })
            })?;
        }
        let stdio = host_stdio.finish();
        if let Some(e) = read_report(rep_r) {
            let rx = reaper.subscribe(pid);
            let _ = rx.recv();
            return Err(setup_to_error(
                e,
                p.args.first().map(|s| s.as_str()).unwrap_or(""),
            ));
        }
        let exec_done = crate::util::clock::monotonic_ns();
        let (io, master) = stdio.map_err(fail)?;
        let mut steps = String::new();
        let mut tim_r = tim_r;
        let _ = tim_r.read_to_string(&mut steps);
        for (step, d) in child_timings(&steps, go_at, exec_done) {
            trace(step, d);
        }
        Ok((pid, io, master, reaper))
    }

    /// The container's first process, between clone and execve. Returns only on failure.
    fn child(
        cfg: &ProcessStart,
        go: File,
        stdio: ChildStdio,
        cap_last: u32,
        timing: File,
        remap: Option<ChildUserns>,
    ) -> SetupError {
        let mut go = go;
        let mut b = [0u8; 1];
        if go.read(&mut b).unwrap_or(0) != 1 {
            return SetupError::new(
                "wait for the monitor",
                std::io::Error::from_raw_os_error(libc::EPIPE),
            );
        }
        let mut timing = timing;
        let mut mark = |step: Phase| {
            let _ = writeln!(timing, "{step}\t{}", crate::util::clock::monotonic_ns());
        };
        let mut run = || -> Result<(), SetupError> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| SetupError::new("cgroup namespace", std::io::Error::from(e)))?;
            let idmap = remap.as_ref().map(|r| rootfs::RootIdmap {
                userns: r.fd.as_raw_fd(),
                staging: cfg.rootfs.target.with_file_name("idmap"),
                uid: r.map.uid,
                gid: r.map.gid,
                size: r.map.size,
            });
            if remap.is_some() && cfg.spec.network != NetworkMode::Host {
                // A remapped root has no capability in this network namespace (its
                // owner is the host's user namespace): like Docker, let anyone bind
                // low ports and open ICMP sockets in it.
                userns::unprivileged_network()?;
            }
            rootfs::mount_all(&cfg.rootfs, idmap.as_ref())?;
            mark(Phase::Rootfs);
            rootfs::pivot(&cfg.rootfs.target)?;
            mark(Phase::PivotRoot);
            let sec = &cfg.spec.security;
            if !sec.privileged && !sec.unmask_system_paths {
                rootfs::mask_and_protect(std::path::Path::new("/"))?;
            }
            mark(Phase::MaskedPaths);
            nix::unistd::sethostname(&cfg.spec.hostname)
                .map_err(|e| SetupError::new("sethostname", std::io::Error::from(e)))?;
            if cfg.spec.network != NetworkMode::Host {
                workload::loopback_up()?;
            }
            mark(Phase::HostnameNetwork);
            Ok(())
        };
        if let Err(e) = run() {
            return e;
        }
        drop(timing);
        if let Some(r) = remap {
            // Last: into the user namespace, whose maps the monitor writes.
            if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
                return SetupError::new("new user namespace", std::io::Error::from(e));
            }
            if let Err(e) = r.handshake.ask() {
                return SetupError::new("wait for the user namespace maps", e);
            }
            // Its root from here on: what the set-up still makes (the working
            // directory, the terminal) belongs to the container's root, not to an
            // unmapped host root.
            if let Err(e) = nsenter::enter_as_root(None) {
                return SetupError::new("become root in the user namespace", e);
            }
        }
        workload::exec_workload(
            &cfg.spec.process,
            stdio,
            &cfg.confinement,
            cap_last,
            true,
            false,
        )
    }
}

impl Sandbox for ProcessSandbox {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn wait(&self) -> ExitInfo {
        let rx = self
            .exit_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let status = rx.and_then(|rx| rx.recv().ok()).unwrap_or(255 << 8);
        let mut info = ExitInfo::from_wait_status(status);
        info.oom_killed = self.cgroup.oom_killed();
        info
    }

    fn signal(&self, sig: i32) -> Result<(), SandboxError> {
        // SAFETY: kill(2) on the container's init, our child (not yet reaped while we run).
        if unsafe { libc::kill(self.pid, sig) } != 0 {
            return Err(SandboxError::Io(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn kill(&self) -> Result<(), SandboxError> {
        let _ = self.cgroup.thaw();
        self.cgroup.kill_all()?;
        Ok(())
    }

    fn pause(&self) -> Result<(), SandboxError> {
        Ok(self.cgroup.freeze()?)
    }

    fn resume(&self) -> Result<(), SandboxError> {
        Ok(self.cgroup.thaw()?)
    }

    fn resize(&self, rows: u16, cols: u16) {
        if let Some(m) = &self.tty_master {
            crate::init::set_winsize(m, rows, cols);
        }
    }

    fn exec(&self, p: &ProcessSpec) -> Result<Box<dyn ExecProcess>, SandboxError> {
        nsenter::exec(
            self.pid,
            self.cgroup.as_ref(),
            &self.reaper,
            p,
            &self.confinement,
            self.cap_last,
            self.remapped,
        )
    }

    fn copy_out(&self, path: &str, out: &mut (dyn Write + Send)) -> Result<(), SandboxError> {
        let path = path.to_string();
        nsenter::in_container(
            self.pid,
            self.remapped,
            self.cgroup.as_ref(),
            &self.reaper,
            None,
            Some(out),
            move |_, w| crate::cptar::pack(crate::cptar::Side::Container, &path, w),
        )
    }

    fn copy_in(&self, path: &str, input: &mut (dyn Read + Send)) -> Result<(), SandboxError> {
        let path = path.to_string();
        nsenter::in_container(
            self.pid,
            self.remapped,
            self.cgroup.as_ref(),
            &self.reaper,
            Some(input),
            None,
            move |r, _| crate::cptar::extract(crate::cptar::Side::Container, r, &path, None),
        )
    }

    fn top(&self) -> Result<Vec<TopRow>, SandboxError> {
        Ok(crate::util::proc::top_rows(&self.cgroup.pids()?))
    }

    fn stats(&self) -> Result<SandboxStats, SandboxError> {
        let s = self.cgroup.stats()?;
        Ok(SandboxStats {
            memory_bytes: s.memory_bytes,
            memory_peak: s.memory_peak,
            memory_limit: s.memory_limit,
            cpu_usage_ns: s.cpu_usage_ns,
            pids: s.pids,
        })
    }

    fn cleanup(&self) {
        let _ = self.cgroup.thaw();
        let _ = self.cgroup.kill_all();
        let _ = self.cgroup.destroy();
    }
}

/// What the container's init needs for `--userns remap`.
struct ChildUserns {
    map: crate::spec::IdMap,
    fd: OwnedFd,
    handshake: userns::Handshake,
}

/// Wrap a raw fd we own into a File.
///
/// # Safety
/// `fd` must be an open descriptor owned by the caller and not used elsewhere.
pub(crate) unsafe fn file_from_raw(fd: i32) -> File {
    // SAFETY: ownership is transferred by the caller per this function's contract.
    unsafe { File::from_raw_fd(fd) }
}

/// `--userns remap`, before the clone: the mapping, a namespace holding it (to idmap
/// the layers through), and the pipes of the handshake in which the child asks for
/// its maps (the parent's ends, then the child's).
type RemapSetup = (crate::spec::IdMap, OwnedFd, (File, File), (File, File));

fn remap_setup(map: Option<crate::spec::IdMap>) -> Result<Option<RemapSetup>, SandboxError> {
    let Some(map) = map else {
        return Ok(None);
    };
    let fd = userns::mapping_namespace(&map).map_err(|e| SandboxError::Setup {
        step: "make the user namespace mapping".into(),
        source: e,
    })?;
    let (ask_r, ask_w) = pipe()?;
    let (done_r, done_w) = pipe()?;
    Ok(Some((map, fd, (ask_r, done_w), (ask_w, done_r))))
}

/// The namespaces a process container's first process is cloned into (the host's
/// network namespace is shared with `--network host`).
fn clone_flags(network: &NetworkMode) -> libc::c_int {
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWPID;
    if *network != NetworkMode::Host {
        flags |= libc::CLONE_NEWNET;
    }
    flags
}

/// The child's step timestamps (`name\tns` lines, CLOCK_MONOTONIC) as durations from
/// the go signal, then `exec` up to `exec_done`. Unknown or torn lines are skipped.
fn child_timings(text: &str, go_at: u64, exec_done: u64) -> Vec<(Phase, std::time::Duration)> {
    let mut out = Vec::new();
    let mut last = go_at;
    for line in text.lines() {
        if let Some((name, ns)) = line.split_once('\t') {
            if let (Some(step), Ok(ns)) = (Phase::from_name(name), ns.parse::<u64>()) {
                out.push((
                    step,
                    std::time::Duration::from_nanos(ns.saturating_sub(last)),
                ));
                last = ns;
            }
        }
    }
    out.push((
        Phase::Exec,
        std::time::Duration::from_nanos(exec_done.saturating_sub(last)),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::Phase;
    use crate::spec::NetworkMode;
    use std::time::Duration;

    #[test]
    fn the_first_process_gets_its_own_namespaces_but_host_networking_shares_the_hosts() {
        let f = super::clone_flags(&NetworkMode::Bridge);
        for ns in [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
        ] {
            assert_ne!(f & ns, 0);
        }
        assert_ne!(
            super::clone_flags(&NetworkMode::None) & libc::CLONE_NEWNET,
            0
        );
        assert_eq!(
            super::clone_flags(&NetworkMode::Host) & libc::CLONE_NEWNET,
            0
        );
        assert_eq!(
            f & libc::CLONE_NEWUSER,
            0,
            "user namespaces only with --userns"
        );
    }

    #[test]
    fn child_timings_are_durations_between_steps_and_skip_what_they_cannot_read() {
        let text = "rootfs\t1100\nwarp\t1150\npivot_root\t1300\ntorn";
        assert_eq!(
            super::child_timings(text, 1000, 1700),
            [
                (Phase::Rootfs, Duration::from_nanos(100)),
                (Phase::PivotRoot, Duration::from_nanos(200)),
                (Phase::Exec, Duration::from_nanos(400)),
            ]
        );
        // A clock that went backwards gives zero, never a panic.
        assert_eq!(
            super::child_timings("rootfs\t900", 1000, 800),
            [
                (Phase::Rootfs, Duration::ZERO),
                (Phase::Exec, Duration::ZERO)
            ]
        );
    }
}
