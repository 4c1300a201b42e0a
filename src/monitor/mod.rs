//! The per-container supervisor. One detached process per running container owns the
//! sandbox for its whole life: it keeps stdout/stderr in the log file, serves the
//! control socket (attach, exec, cp, pause, stop, top, stats), waits for the workload,
//! records the exit code, and removes `--rm` containers. For `vm` the VMM runs here.

pub mod client;
#[cfg(test)]
mod fake;
pub mod logs;
pub mod protocol;
mod report;
mod run;
mod server;
mod start;

pub use run::{reap_dead, run};

use crate::paths::Paths;
use crate::sandbox::{ExitInfo, Sandbox};
use crate::state::{Status, Store};
use protocol::{write_frame, Kind};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A client receiving the workload's output.
pub(crate) struct Attacher {
    pub id: u64,
    pub out: UnixStream,
    pub stdout: bool,
    pub stderr: bool,
}

/// State shared by the monitor's threads.
pub(crate) struct Shared {
    pub sandbox: Box<dyn Sandbox>,
    pub attachers: Mutex<Vec<Attacher>>,
    pub stdin: Mutex<Option<File>>,
    pub exit: Mutex<Option<ExitInfo>>,
    pub exit_cv: Condvar,
    /// Requests still writing a reply after the exit (the monitor waits for them).
    pub pending: Mutex<usize>,
    pub pending_cv: Condvar,
    pub store: Store,
    pub id: String,
    pub next_attacher: Mutex<u64>,
}

impl Shared {
    /// The state of a monitor around `sandbox`, before anything is attached.
    pub fn new(sandbox: Box<dyn Sandbox>, stdin: Option<File>, store: Store, id: &str) -> Shared {
        Shared {
            sandbox,
            attachers: Mutex::new(Vec::new()),
            stdin: Mutex::new(stdin),
            exit: Mutex::new(None),
            exit_cv: Condvar::new(),
            pending: Mutex::new(0),
            pending_cv: Condvar::new(),
            store,
            id: id.to_string(),
            next_attacher: Mutex::new(0),
        }
    }

    /// Block until the workload has exited or `timeout` passed.
    pub fn wait_exit(&self, timeout: Option<Duration>) -> Option<ExitInfo> {
        let mut g = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        while g.is_none() {
            match deadline {
                None => g = self.exit_cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = std::time::Instant::now();
                    if now >= d {
                        break;
                    }
                    g = self
                        .exit_cv
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        *g
    }

    /// Send a frame to every attacher that wants this stream; drop the broken ones.
    pub fn broadcast(&self, kind: Kind, data: &[u8]) {
        let mut g = self.attachers.lock().unwrap_or_else(|e| e.into_inner());
        g.retain_mut(|a| {
            let wanted = match kind {
                Kind::Stdout => a.stdout,
                Kind::Stderr => a.stderr,
                _ => true,
            };
            !wanted || write_frame(&mut a.out, kind, data).is_ok()
        });
    }

    pub fn add_attacher(&self, out: UnixStream, stdout: bool, stderr: bool) -> u64 {
        let mut n = self.next_attacher.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        let id = *n;
        let _ = out.set_write_timeout(Some(Duration::from_secs(10)));
        self.attachers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Attacher {
                id,
                out,
                stdout,
                stderr,
            });
        id
    }

    pub fn remove_attacher(&self, id: u64) {
        self.attachers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a| a.id != id);
    }

    pub fn set_status(&self, status: Status) {
        let _ = self
            .store
            .update_volatile(&self.id, |r| r.state.status = status);
    }
}

pub(crate) fn log_line(paths: &Paths, id: &str, msg: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(paths.monitor_log(id))
    {
        let _ = writeln!(f, "{} {msg}", chrono::Utc::now().to_rfc3339());
    }
}

pub(crate) fn rusage(who: i32) -> (f64, u64) {
    // SAFETY: rusage is plain old data; zeroed is valid and getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into our local.
    unsafe { libc::getrusage(who, &mut ru) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    (
        ms(ru.ru_utime) + ms(ru.ru_stime),
        ru.ru_maxrss as u64 * 1024,
    )
}

pub use crate::util::error_chain;
