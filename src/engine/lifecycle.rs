//! Starting, stopping, pausing and removing containers.

use super::{io_err, Engine, EngineError};
use crate::monitor::client::{self, StreamEnd, StreamOpts};
use crate::monitor::protocol::{self, Reply, Request, StartReport};
use crate::state::{ContainerRecord, Status};
use crate::teardown::{Occasion, Step};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// How `start` connects the caller to the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Return once the workload runs (`run -d`, `start`).
    Detached,
    /// Stream output until the workload exits (`run`, `start -a`).
    Attached {
        stdin: bool,
        /// Forward SIGINT/SIGTERM… to the workload.
        proxy_signals: bool,
    },
}

/// Parse `-s` values: `KILL`, `SIGKILL`, `9`.
pub fn parse_signal(s: &str) -> Result<i32, EngineError> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| EngineError::Invalid(format!("invalid signal {s:?}")))
}

impl Engine {
    /// Launch the container's monitor, detached from us, and return the read end of
    /// its ready pipe.
    /// Start the container's monitor: a child of ours, forked twice so that it is
    /// reparented at once and outlives us, in a session of its own. It runs the monitor
    /// code directly (no exec: one process start-up less on the hot path). Returns the
    /// read end of its ready pipe.
    fn spawn_monitor(
        &self,
        id: &str,
        attach_first: bool,
        creating: Option<&crate::state::Creating>,
    ) -> Result<BufReader<std::fs::File>, EngineError> {
        let creating_fd = creating.map(|c| c.fd());
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| io_err("cannot create a pipe")(e.into()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(self.paths.monitor_log(id))
            .map_err(io_err("cannot open the monitor log"))?;
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(io_err("cannot open /dev/null"))?;
        let paths = self.paths.clone();
        let id = id.to_string();
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: fork; the CLI has started no threads at this point (the stream threads
        // come after the monitor is up), so the child is a consistent copy.
        match unsafe { libc::fork() } {
            -1 => {
                return Err(io_err("cannot start the monitor")(
                    std::io::Error::last_os_error(),
                ))
            }
            0 => {
                // SAFETY: second fork in the child, same reasoning; the middle process
                // exits at once so the monitor is reparented and never our zombie.
                match unsafe { libc::fork() } {
                    -1 => {
                        // SAFETY: leave the child without running the parent's destructors.
                        unsafe { libc::_exit(125) }
                    }
                    0 => {}
                    _ => {
                        // SAFETY: as above.
                        unsafe { libc::_exit(0) }
                    }
                }
                let _ = nix::unistd::setsid();
                // The monitor writes to pipes whose readers may vanish: it must get
                // EPIPE, not die of SIGPIPE as the CLI does.
                // SAFETY: setting a signal disposition; no handler involved.
                unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
                let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
                let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
                let _ = nix::unistd::dup2(log.as_raw_fd(), 2);
                let wfd = w.as_raw_fd();
                crate::util::fs::close_inherited_fds(&[Some(wfd), creating_fd]);
                // SAFETY: prctl with a constant NUL-terminated name.
                unsafe { libc::prctl(libc::PR_SET_NAME, c"tb-monitor".as_ptr()) };
                // SAFETY: wfd is the ready pipe's write end, kept open above and owned
                // by nothing else in this process.
                let ready = unsafe { crate::process::file_from_raw(wfd) };
                // SAFETY: the creation lock's descriptor, inherited and kept open above,
                // now ours alone (the CLI's copy shares the lock, not the descriptor).
                let creating = creating_fd.map(|fd| unsafe { crate::state::Creating::from_fd(fd) });
                let code = crate::monitor::run(&paths, &id, attach_first, Some(ready), creating);
                // SAFETY: leave without running the CLI's destructors or atexit handlers.
                unsafe { libc::_exit(code) }
            }
            child => {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
            }
        }
        drop(w);
        Ok(BufReader::new(std::fs::File::from(r)))
    }

    /// The monitor's next start report; a monitor that ended without one failed.
    fn next_report(
        &self,
        id: &str,
        r: &mut BufReader<std::fs::File>,
    ) -> Result<StartReport, EngineError> {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return Err(EngineError::StartFailed {
                message: format!(
                    "the container's monitor exited before starting it (see {})",
                    self.paths.monitor_log(id).display()
                ),
                code: 125,
            });
        }
        serde_json::from_str(&line).map_err(|e| EngineError::StartFailed {
            message: format!("bad message from the monitor: {e}"),
            code: 125,
        })
    }

    /// Read start reports until the start is over, passing phases to `on_phase`.
    fn read_ready(&self, id: &str, r: &mut BufReader<std::fs::File>) -> Result<(), EngineError> {
        loop {
            match self.next_report(id, r)? {
                StartReport::Listening => {}
                StartReport::Phase { phase, ms } => {
                    if let Some(f) = &self.on_phase {
                        f(phase, ms);
                    }
                }
                StartReport::Started => return Ok(()),
                StartReport::Failed { error, code } => {
                    return Err(EngineError::StartFailed {
                        message: error,
                        code,
                    })
                }
            }
        }
    }

    /// Start a created or exited container. Attached: returns the workload's exit code
    /// (None when the user detached).
    pub fn start(&self, reference: &str, mode: StartMode) -> Result<Option<i32>, EngineError> {
        self.start_with(reference, mode, None)
    }

    /// `start`, handing the creation lock (from `run`) to the monitor.
    fn start_with(
        &self,
        reference: &str,
        mode: StartMode,
        creating: Option<crate::state::Creating>,
    ) -> Result<Option<i32>, EngineError> {
        let rec = self.get(reference)?;
        if rec.is_active() {
            return match mode {
                StartMode::Detached => Ok(None),
                StartMode::Attached { .. } => Err(EngineError::Conflict(format!(
                    "container {} is already running",
                    rec.name
                ))),
            };
        }
        let id = rec.id.clone();
        match mode {
            StartMode::Detached => {
                let mut r = self.spawn_monitor(&id, false, creating.as_ref())?;
                self.read_ready(&id, &mut r)?;
                Ok(None)
            }
            StartMode::Attached {
                stdin,
                proxy_signals,
            } => {
                let mut r = self.spawn_monitor(&id, true, creating.as_ref())?;
                match self.next_report(&id, &mut r)? {
                    StartReport::Listening => {}
                    StartReport::Failed { error, code } => {
                        return Err(EngineError::StartFailed {
                            message: error,
                            code,
                        })
                    }
                    other => {
                        return Err(EngineError::StartFailed {
                            message: format!("unexpected message from the monitor: {other:?}"),
                            code: 125,
                        })
                    }
                }
                let socket = self.paths.control_socket(&id);
                let mut conn = client::connect(&socket)?;
                protocol::write_json_line(
                    &mut conn,
                    &Request::Attach {
                        stdin,
                        stdout: true,
                        stderr: true,
                        close_stdin: true,
                    },
                )
                .map_err(io_err("cannot attach"))?;
                self.read_ready(&id, &mut r)?;
                let end = client::stream(
                    conn,
                    StreamOpts {
                        stdin,
                        tty: rec.spec.process.tty,
                        detach_keys: rec.spec.process.tty && stdin,
                        proxy_signals: proxy_signals.then(|| socket.clone()),
                    },
                )?;
                self.finish_stream(&id, end)
            }
        }
    }

    /// Turn how a stream ended into an exit code.
    pub(crate) fn finish_stream(
        &self,
        id: &str,
        end: StreamEnd,
    ) -> Result<Option<i32>, EngineError> {
        match end {
            StreamEnd::Exited(code) => Ok(Some(code)),
            StreamEnd::Detached => Ok(None),
            StreamEnd::Lost => {
                let rec = self.store.load(id).ok().map(|r| self.reconcile(r));
                Ok(Some(rec.and_then(|r| r.state.exit_code).unwrap_or(125)))
            }
        }
    }

    /// `run`: create + start. A failed start removes the container again.
    pub fn run(
        &self,
        opts: &super::CreateOptions,
        detach: bool,
    ) -> Result<(ContainerRecord, Option<i32>), EngineError> {
        let (rec, creating) = self.create_guarded(opts)?;
        let mode = if detach {
            StartMode::Detached
        } else {
            StartMode::Attached {
                stdin: opts.stdin,
                proxy_signals: true,
            }
        };
        match self.start_with(&rec.id, mode, Some(creating)) {
            Ok(code) => Ok((rec, code)),
            Err(e) => {
                self.force_remove(&rec.id);
                Err(e)
            }
        }
    }

    /// Remove a container that never really ran, ignoring errors (failed `run`).
    fn force_remove(&self, id: &str) {
        if let Ok(rec) = self.store.load(id) {
            if rec.is_active() {
                let _ = client::request(
                    &self.paths.control_socket(id),
                    &Request::Kill {
                        signal: libc::SIGKILL,
                    },
                );
                self.wait_until_inactive(id, Duration::from_secs(10));
            }
        }
        match self.store.load(id) {
            Ok(rec) => {
                self.teardown(&rec, &Occasion::Remove { volumes: true });
            }
            Err(_) => {
                self.teardown_damaged(id);
            }
        }
    }

    fn wait_until_inactive(&self, id: &str, max: Duration) {
        let deadline = std::time::Instant::now() + max;
        while std::time::Instant::now() < deadline {
            match self.store.load(id) {
                Ok(r) => {
                    if !self.reconcile(r).is_active() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return,
            }
        }
    }

    pub fn stop(&self, reference: &str, timeout: u64) -> Result<ContainerRecord, EngineError> {
        let rec = self.get(reference)?;
        if !rec.is_active() {
            return Ok(rec);
        }
        client::request(
            &self.paths.control_socket(&rec.id),
            &Request::Stop {
                signal: libc::SIGTERM,
                timeout,
            },
        )?;
        self.wait_until_inactive(&rec.id, Duration::from_secs(5));
        Ok(rec)
    }

    pub fn kill(&self, reference: &str, signal: i32) -> Result<ContainerRecord, EngineError> {
        let rec = self.get(reference)?;
        if !rec.is_active() {
            return Err(EngineError::Conflict(format!(
                "cannot kill container {}: container is not running",
                rec.name
            )));
        }
        client::request(
            &self.paths.control_socket(&rec.id),
            &Request::Kill { signal },
        )?;
        if signal == libc::SIGKILL {
            self.wait_until_inactive(&rec.id, Duration::from_secs(10));
        }
        Ok(rec)
    }

    pub fn restart(&self, reference: &str, timeout: u64) -> Result<ContainerRecord, EngineError> {
        let rec = self.stop(reference, timeout)?;
        self.store.update(&rec.id, |r| r.restart_count += 1)?;
        self.start(&rec.id, StartMode::Detached)?;
        Ok(rec)
    }

    pub fn pause(&self, reference: &str) -> Result<ContainerRecord, EngineError> {
        let rec = self.get(reference)?;
        match rec.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::Conflict(format!(
                    "container {} is already paused",
                    rec.name
                )))
            }
            _ => {
                return Err(EngineError::Conflict(format!(
                    "container {} is not running",
                    rec.name
                )))
            }
        }
        client::request(&self.paths.control_socket(&rec.id), &Request::Pause)?;
        Ok(rec)
    }

    pub fn unpause(&self, reference: &str) -> Result<ContainerRecord, EngineError> {
        let rec = self.get(reference)?;
        if rec.state.status != Status::Paused {
            return Err(EngineError::Conflict(format!(
                "container {} is not paused",
                rec.name
            )));
        }
        client::request(&self.paths.control_socket(&rec.id), &Request::Resume)?;
        Ok(rec)
    }

    /// `rm`: refuses a running container unless `force`; with `volumes`, its anonymous
    /// volumes go too. Returns the removed record (None for a container whose record
    /// was damaged, which only `force` removes).
    pub fn remove(
        &self,
        reference: &str,
        force: bool,
        volumes: bool,
    ) -> Result<Option<ContainerRecord>, EngineError> {
        let rec = match self.get(reference) {
            Ok(r) => r,
            Err(EngineError::State(crate::state::StateError::Corrupt { path, source })) => {
                let id = self.store.resolve(reference)?;
                if !force {
                    return Err(EngineError::Conflict(format!(
                        "container {id}: its record {} is damaged ({source}); rm -f removes it",
                        path.display()
                    )));
                }
                self.remove_damaged(&id)?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if rec.is_active() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "cannot remove container {}: container is {}: stop the container before removing or force remove",
                    rec.name, rec.state.status
                )));
            }
            let _ = client::request(
                &self.paths.control_socket(&rec.id),
                &Request::Kill {
                    signal: libc::SIGKILL,
                },
            );
            self.wait_until_inactive(&rec.id, Duration::from_secs(15));
            if let Ok(r) = self.store.load(&rec.id) {
                if self.reconcile(r).is_active() {
                    return Err(EngineError::Conflict(format!(
                        "container {} did not stop; try again",
                        rec.name
                    )));
                }
            }
        }
        removed(self.teardown(&rec, &Occasion::Remove { volumes }))?;
        Ok(Some(rec))
    }

    /// `rm -f` of a container whose record cannot be read: stop whatever is left of it
    /// (its monitor still knows it; without one, its cgroup), then remove it.
    fn remove_damaged(&self, id: &str) -> Result<(), EngineError> {
        let socket = self.paths.control_socket(id);
        if socket.exists() {
            let _ = client::request(
                &socket,
                &Request::Kill {
                    signal: libc::SIGKILL,
                },
            );
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while self.paths.run_dir(id).exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        removed(self.teardown_damaged(id))
    }

    /// Block until the container exits; its exit code.
    pub fn wait(&self, reference: &str) -> Result<i32, EngineError> {
        let rec = self.get(reference)?;
        let id = rec.id.clone();
        if rec.is_active() {
            if let Ok(Reply::Exited { exit_code: Some(c) }) =
                client::request(&self.paths.control_socket(&id), &Request::Wait)
            {
                return Ok(c);
            }
        }
        loop {
            match self.store.load(&id) {
                Ok(r) => {
                    let r = self.reconcile(r);
                    if r.state.status == Status::Exited {
                        return Ok(r.state.exit_code.unwrap_or(0));
                    }
                }
                Err(crate::state::StateError::NotFound(_)) => {
                    return Err(EngineError::Conflict(format!(
                        "container {} was removed before it exited",
                        rec.name
                    )))
                }
                Err(e) => return Err(e.into()),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn rename(&self, reference: &str, new_name: &str) -> Result<(), EngineError> {
        if !crate::util::ids::valid_name(new_name) {
            return Err(EngineError::Invalid(format!(
                "invalid container name {new_name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let rec = self.get(reference)?;
        Ok(self.store.rename(&rec.id, new_name)?)
    }

    /// Remove every stopped container; their ids.
    pub fn prune(&self) -> Result<Vec<String>, EngineError> {
        let mut removed = Vec::new();
        for rec in self.list(true)? {
            if !rec.is_active() && removed_ok(&self.teardown(&rec, &Occasion::Prune)) {
                removed.push(rec.id);
            }
        }
        Ok(removed)
    }

    /// Write a line to stderr (used by commands that report per-container errors).
    pub fn warn(msg: &str) {
        let _ = writeln!(std::io::stderr(), "{msg}");
    }
}

/// Did a teardown remove the record?
fn removed_ok(failed: &[(Step, String)]) -> bool {
    !failed.iter().any(|(s, _)| *s == Step::RemoveRecord)
}

/// A teardown whose record could not be removed is an error; other failed steps are
/// only reported (what they leave is found again by the next command).
fn removed(failed: Vec<(Step, String)>) -> Result<(), EngineError> {
    for (step, e) in failed {
        if step == Step::RemoveRecord {
            return Err(EngineError::Conflict(format!(
                "cannot remove the record: {e}"
            )));
        }
        Engine::warn(&format!("warning: {step:?}: {e}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
