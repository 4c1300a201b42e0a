//! Entering a running process container: `exec` (every namespace + the cgroup) and
//! the helper `cp` runs in its mount namespace.
//!
//! Two rules keep a hostile container from reaching the host through them:
//!
//! - Nothing of ours appears in the container's pid namespace before it is inside the
//!   container. An exec'd process is forked by a shim that has already entered every
//!   namespace, so from its first instant `/proc/PID/root` is the container's root and
//!   not the host's. The shim runs from a sealed in-memory copy of twinbox, so
//!   `/proc/PID/exe` of a process that has not exec'd yet is that copy — the host's
//!   binary is never exposed (CVE-2019-5736) — and it is non-dumpable, so the
//!   container cannot open its /proc files at all without CAP_SYS_PTRACE.
//! - The cp helper never joins the pid namespace (the container cannot see it), drops
//!   every capability but the file ones, and resolves every path in the container's
//!   root with openat2 (see `cptar`): no symlink, `..` or magic link leads out.

use super::cgroups::CgroupManager;
use super::exec_shim::{ShimPlan, StdioFds, SHIM_ARG0};
use crate::init::caps;
use crate::init::confine::{self, Confinement};
use crate::init::reaper::Reaper;
use crate::init::stdio::{make_stdio, ChildStdio};
use crate::init::{pipe, read_report, set_winsize, setup_to_error, workload, SetupError};
use crate::sandbox::{ExecProcess, SandboxError, WorkloadIo};
use crate::spec::ProcessSpec;
use nix::sched::{setns, CloneFlags};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::Receiver;
use std::sync::Mutex;

const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// What a cp helper keeps: enough to read and write any file in the container.
/// (CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, MKNOD.)
const CP_CAPS: &[u32] = &[0, 1, 2, 3, 4, 27];

fn open_ns(pid: i32, name: &str) -> Result<File, SandboxError> {
    File::open(format!("/proc/{pid}/ns/{name}")).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SandboxError::NotRunning,
        _ => SandboxError::Io(e),
    })
}

/// An `exec`ed process.
struct Exec {
    io: Option<WorkloadIo>,
    rx: Mutex<Receiver<i32>>,
    master: Option<OwnedFd>,
}

impl ExecProcess for Exec {
    fn take_io(&mut self) -> Option<WorkloadIo> {
        self.io.take()
    }

    fn wait(&self) -> Result<i32, SandboxError> {
        let st = self
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recv()
            .map_err(|_| SandboxError::Other("exec process vanished".into()))?;
        Ok(crate::sandbox::ExitInfo::from_wait_status(st).code)
    }

    fn resize(&self, rows: u16, cols: u16) {
        if let Some(m) = &self.master {
            set_winsize(m, rows, cols);
        }
    }
}

/// Join a remapped container's user namespace (if `user`; else we are in it already)
/// and become its root: what we write then belongs to the container's root, not to an
/// unmapped host root, and capabilities survive an execve.
pub(crate) fn enter_as_root(user: Option<&File>) -> io::Result<()> {
    if let Some(u) = user {
        setns(u, CloneFlags::CLONE_NEWUSER).map_err(io::Error::from)?;
    }
    // No group of the host's (root's supplementary groups) comes along.
    nix::unistd::setgroups(&[]).map_err(io::Error::from)?;
    let (g, uid) = (nix::unistd::Gid::from_raw(0), nix::unistd::Uid::from_raw(0));
    nix::unistd::setresgid(g, g, g).map_err(io::Error::from)?;
    nix::unistd::setresuid(uid, uid, uid).map_err(io::Error::from)
}

/// A sealed, in-memory copy of the running twinbox binary (nothing can write it).
fn sealed_copy_of_self() -> io::Result<OwnedFd> {
    let fd = nix::sys::memfd::memfd_create(
        c"twinbox",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC
            | nix::sys::memfd::MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(io::Error::from)?;
    let mut f = File::from(fd);
    io::copy(&mut File::open("/proc/self/exe")?, &mut f)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a memfd we own, integer argument.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f.into())
}

/// The plan, in a memory file the shim reads from its start.
fn plan_file(plan: &ShimPlan) -> io::Result<File> {
    let fd = nix::sys::memfd::memfd_create(c"plan", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut f = File::from(fd);
    serde_json::to_writer(&mut f, plan).map_err(io::Error::other)?;
    f.rewind()?;
    Ok(f)
}

fn no_cloexec(fd: i32) {
    // SAFETY: fcntl on a descriptor this process holds; integer arguments.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
}

/// The container's namespaces, in the order they are joined: the pid namespace after
/// the others, and a remapped container's user namespace last (once in it, no
/// capability is left over the namespaces the host's user namespace owns).
fn namespaces_to_join(pid: i32, remapped: bool) -> Result<Vec<(File, CloneFlags)>, SandboxError> {
    let mut all: Vec<(File, CloneFlags)> = NAMESPACES
        .iter()
        .map(|(n, f)| open_ns(pid, n).map(|file| (file, *f)))
        .collect::<Result<_, _>>()?;
    all.push((open_ns(pid, "pid")?, CloneFlags::CLONE_NEWPID));
    if remapped {
        all.push((open_ns(pid, "user")?, CloneFlags::CLONE_NEWUSER));
    }
    Ok(all)
}

/// The descriptor numbers of the child's stdio, for the shim's plan.
fn stdio_fds(child: &ChildStdio) -> StdioFds {
    match child {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => StdioFds::Pipes {
            stdin: stdin.as_raw_fd(),
            stdout: stdout.as_raw_fd(),
            stderr: stderr.as_raw_fd(),
        },
        ChildStdio::Pty { sock } => StdioFds::Pty {
            sock: sock.as_raw_fd(),
        },
    }
}

/// Join every namespace; in a remapped container's user namespace, become its root:
/// only a root of that namespace keeps capabilities across the execve that follows.
fn enter_namespaces(all: &[(File, CloneFlags)], joins_userns: bool) -> Result<(), SetupError> {
    for (f, flag) in all {
        setns(f, *flag).map_err(|e| SetupError::new("enter the namespaces", io::Error::from(e)))?;
    }
    if joins_userns {
        enter_as_root(None).map_err(|e| SetupError::new("become root in the user namespace", e))?;
    }
    Ok(())
}

/// execveat the sealed copy of twinbox with `argv` and an empty environment; returns
/// only on failure.
fn exec_image(image: &impl AsRawFd, argv: &[CString]) -> SetupError {
    let argv_p: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: argv and envp are NULL-terminated arrays of NUL-terminated strings that
    // live across the call; `image` is an executable memfd.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            image.as_raw_fd(),
            c"".as_ptr(),
            argv_p.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    SetupError::new("start the exec shim", io::Error::last_os_error())
}

pub fn exec(
    pid: i32,
    cgroup: &dyn CgroupManager,
    reaper: &Reaper,
    p: &ProcessSpec,
    conf: &Confinement,
    cap_last: u32,
    remapped: bool,
) -> Result<Box<dyn ExecProcess>, SandboxError> {
    let others = namespaces_to_join(pid, remapped)?;
    let joins_userns = remapped;
    let image = sealed_copy_of_self()?;
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let (host_stdio, child_stdio) = make_stdio(p)?;
    let (go_r, mut go_w) = pipe()?;
    let (rep_r, rep_w) = pipe()?;
    let (mut pid_r, pid_w) = pipe()?;
    let stdio = stdio_fds(&child_stdio);
    let plan = plan_file(&ShimPlan {
        process: p.clone(),
        confinement: conf.clone(),
        cap_last,
        stdio,
        report: rep_w.as_raw_fd(),
        pid_out: pid_w.as_raw_fd(),
    })?;
    let mut keep: Vec<i32> = vec![rep_w.as_raw_fd(), pid_w.as_raw_fd(), plan.as_raw_fd()];
    keep.extend(stdio.fds());
    let argv = [
        CString::new(SHIM_ARG0).unwrap_or_default(),
        CString::new(plan.as_raw_fd().to_string()).unwrap_or_default(),
    ];
    let child_fds = (child_stdio, pid_w, plan);
    let rep_w_fd = rep_w.as_raw_fd();
    let shim = crate::init::fork_in(crate::init::PidNs::Inherit, move || {
        let _keep_open = child_fds;
        // Nothing of the monitor's reaches the container: stdio on the host's
        // /dev/null, every other descriptor closed at execve but the plan's.
        for target in 0..3 {
            // SAFETY: dup2 of a descriptor we hold onto 0..2.
            unsafe { libc::dup2(null.as_raw_fd(), target) };
        }
        crate::util::fs::cloexec_all_above_stdio();
        confine::not_dumpable();
        // The monitor puts us in the container's cgroup first (its device rules then
        // apply to everything we open, and what we fork is born there).
        let mut go = go_r;
        let mut b = [0u8; 1];
        if go.read(&mut b).unwrap_or(0) != 1 {
            return 126;
        }
        let e = match enter_namespaces(&others, joins_userns) {
            Err(e) => e,
            Ok(()) => {
                for fd in &keep {
                    no_cloexec(*fd);
                }
                exec_image(&image, &argv)
            }
        };
        workload::report(rep_w_fd, &e);
        126
    })?;
    // The closure (and the child's fds it owned) was dropped here in the parent.
    reaper.forked();
    let shim_exit = reaper.subscribe(shim);
    drop(rep_w);
    if let Err(e) = cgroup.add(shim) {
        // SAFETY: kill(2) on our own child, not reaped yet (we hold its subscription).
        unsafe { libc::kill(shim, libc::SIGKILL) };
        return Err(e.into());
    }
    let _ = go_w.write_all(b"g");
    drop(go_w);
    // The shim reports the pid of the process it forked (a child of ours: CLONE_PARENT),
    // then exits; EOF without a pid means it failed, and said why on the report pipe.
    let mut s = String::new();
    let _ = pid_r.read_to_string(&mut s);
    drop(shim_exit);
    let Ok(child) = s.trim().parse::<i32>() else {
        return Err(match read_report(rep_r) {
            Some(e) => setup_to_error(e, p.args.first().map(|s| s.as_str()).unwrap_or("")),
            None => SandboxError::Other("the exec shim exited without starting the process".into()),
        });
    };
    let rx = reaper.subscribe(child);
    let stdio = host_stdio.finish();
    if let Some(e) = read_report(rep_r) {
        let _ = rx.recv();
        return Err(setup_to_error(
            e,
            p.args.first().map(|s| s.as_str()).unwrap_or(""),
        ));
    }
    let (io, master) = stdio?;
    Ok(Box::new(Exec {
        io: Some(io),
        rx: Mutex::new(rx),
        master,
    }))
}

/// The cp helper's confinement: the container's mount namespace (and a remapped one's
/// user namespace, as its root), only the file capabilities a copy needs, no_new_privs.
fn enter_for_copy(mnt: &File, user: Option<&File>, cap_last: u32) -> io::Result<()> {
    let keep = CP_CAPS.iter().fold(0u64, |m, c| m | (1u64 << c));
    setns(mnt, CloneFlags::CLONE_NEWNS).map_err(io::Error::from)?;
    if let Some(u) = user {
        enter_as_root(Some(u))?;
    }
    caps::drop_bounding(keep, cap_last)?;
    caps::set_all(keep)?;
    // SAFETY: prctl with integer arguments only.
    match unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Feed `input` to the helper while its output goes to `output` (or nowhere), until
/// both ends close.
fn pump_copy(
    input: Option<&mut (dyn Read + Send)>,
    in_w: File,
    out_r: File,
    output: Option<&mut (dyn Write + Send)>,
) -> Result<(), SandboxError> {
    std::thread::scope(|s| -> Result<(), SandboxError> {
        let feeder = s.spawn(move || {
            let mut in_w = in_w;
            if let Some(inp) = input {
                let _ = io::copy(inp, &mut in_w);
            }
        });
        let mut out_r = out_r;
        match output {
            Some(out) => {
                io::copy(&mut out_r, out)?;
            }
            None => {
                io::copy(&mut out_r, &mut io::sink())?;
            }
        }
        let _ = feeder.join();
        Ok(())
    })
}

/// Run `f` in a child inside `pid`'s mount namespace (the container's root is its
/// root), with `input` piped to its reader and its writer piped to `output`. The child
/// is not in the container's pid namespace, keeps only file capabilities, and is
/// non-dumpable; `f` must resolve paths with `cptar::Side::Container`.
pub fn in_container<F>(
    pid: i32,
    remapped: bool,
    cgroup: &dyn CgroupManager,
    reaper: &Reaper,
    input: Option<&mut (dyn Read + Send)>,
    output: Option<&mut (dyn Write + Send)>,
    f: F,
) -> Result<(), SandboxError>
where
    F: FnOnce(&mut dyn Read, &mut dyn Write) -> io::Result<()> + Send,
{
    let mnt = open_ns(pid, "mnt")?;
    let user = if remapped {
        Some(open_ns(pid, "user")?)
    } else {
        None
    };
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (go_r, mut go_w) = pipe()?;
    let parent_ends = [
        in_w.as_raw_fd(),
        out_r.as_raw_fd(),
        err_r.as_raw_fd(),
        go_w.as_raw_fd(),
    ];
    let cap_last = caps::last_cap();
    let child = crate::init::fork_in(crate::init::PidNs::Inherit, move || {
        for fd in parent_ends {
            // SAFETY: closing this child's copies of the parent's ends.
            unsafe { libc::close(fd) };
        }
        confine::not_dumpable();
        // In the container's cgroup before touching anything of it: its device rules
        // hold for what we open (a device node swapped in for a file included).
        let mut go = go_r;
        let mut b = [0u8; 1];
        if go.read(&mut b).unwrap_or(0) != 1 {
            return 1;
        }
        let (mut r, mut w, mut ew) = (in_r, out_w, err_w);
        let res = enter_for_copy(&mnt, user.as_ref(), cap_last).and_then(|_| f(&mut r, &mut w));
        match res {
            Ok(()) => {
                let _ = w.flush();
                0
            }
            Err(e) => {
                let _ = write!(ew, "{e}");
                1
            }
        }
    })?;
    reaper.forked();
    let rx = reaper.subscribe(child);
    if let Err(e) = cgroup.add(child) {
        // SAFETY: kill(2) on our own child, not reaped yet (we hold its subscription).
        unsafe { libc::kill(child, libc::SIGKILL) };
        let _ = rx.recv();
        return Err(e.into());
    }
    let _ = go_w.write_all(b"g");
    drop(go_w);
    pump_copy(input, in_w, out_r, output)?;
    let status = rx
        .recv()
        .map_err(|_| SandboxError::Other("helper process vanished".into()))?;
    let mut msg = String::new();
    let mut err_r = err_r;
    let _ = err_r.read_to_string(&mut msg);
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(SandboxError::Other(if msg.is_empty() {
            "copy failed".into()
        } else {
            msg
        }))
    }
}
