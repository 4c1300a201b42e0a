//! Entering a running process container: `exec` (all namespaces + cgroup) and
//! helpers that run a function inside its mount namespace (`cp`).

use super::cgroups::CgroupManager;
use crate::launch::reaper::Reaper;
use crate::launch::stdio::make_stdio;
use crate::launch::{pipe, read_report, set_winsize, setup_to_error, workload, SetupError};
use crate::sandbox::{ExecProcess, SandboxError, WorkloadIo};
use crate::spec::ProcessSpec;
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::io::{self, Read, Write};
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

pub fn exec(
    pid: i32,
    cgroup: &dyn CgroupManager,
    reaper: &Reaper,
    p: &ProcessSpec,
    cap_last: u32,
) -> Result<Box<dyn ExecProcess>, SandboxError> {
    let pidns = open_ns(pid, "pid")?;
    let others: Vec<(File, CloneFlags)> = NAMESPACES
        .iter()
        .map(|(n, f)| open_ns(pid, n).map(|file| (file, *f)))
        .collect::<Result<_, _>>()?;
    let (host_stdio, child_stdio) = make_stdio(p)?;
    let (go_r, mut go_w) = pipe()?;
    let (rep_r, rep_w) = pipe()?;
    let go_w_fd = go_w.as_raw_fd();
    let child_fds = (go_r, rep_w);
    let child = crate::launch::fork_in(crate::launch::PidNs::Join(pidns), move || {
        // The parent's end of the go pipe must not stay open in the child.
        // SAFETY: closing our copy of an fd owned by the parent's File.
        unsafe { libc::close(go_w_fd) };
        let (mut go_r, rep_w) = child_fds;
        let mut b = [0u8; 1];
        let e = if go_r.read(&mut b).unwrap_or(0) != 1 {
            SetupError::new(
                "wait for the monitor",
                io::Error::from_raw_os_error(libc::EPIPE),
            )
        } else {
            let entered = others.iter().try_for_each(|(f, flag)| {
                setns(f, *flag)
                    .map_err(|e| SetupError::new("enter the namespaces", io::Error::from(e)))
            });
            match entered {
                Err(e) => e,
                Ok(()) => workload::exec_workload(p, child_stdio, cap_last, false),
            }
        };
        workload::report(rep_w.as_raw_fd(), &e);
        126
    })?;
    // The closure (and the child's fds it owned) was dropped here in the parent.
    reaper.forked();
    let rx = reaper.subscribe(child);
    if let Err(e) = cgroup.add(child) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child, libc::SIGKILL) };
        return Err(e.into());
    }
    let _ = go_w.write_all(b"g");
    drop(go_w);
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

/// Run `f` in a child inside `pid`'s mount namespace, with `input` piped to its reader
/// and its writer piped to `output`.
pub fn in_mount_ns<F>(
    pid: i32,
    reaper: &Reaper,
    input: Option<&mut (dyn Read + Send)>,
    output: Option<&mut (dyn Write + Send)>,
    f: F,
) -> Result<(), SandboxError>
where
    F: FnOnce(&mut dyn Read, &mut dyn Write) -> io::Result<()>,
{
    let mnt = open_ns(pid, "mnt")?;
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // SAFETY: fork; the child only enters the namespace, runs `f` and exits.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(SandboxError::Io(io::Error::last_os_error()));
    }
    if child == 0 {
        drop(in_w);
        drop(out_r);
        drop(err_r);
        let (mut r, mut w, mut ew) = (in_r, out_w, err_w);
        let res = setns(&mnt, CloneFlags::CLONE_NEWNS)
            .map_err(io::Error::from)
            .and_then(|_| f(&mut r, &mut w));
        let code = match res {
            Ok(()) => 0,
            Err(e) => {
                let _ = write!(ew, "{e}");
                1
            }
        };
        let _ = w.flush();
        // SAFETY: leave the forked child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    reaper.forked();
    let rx = reaper.subscribe(child);
    drop(in_r);
    drop(out_w);
    drop(err_w);
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
    })?;
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
