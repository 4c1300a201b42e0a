//! Talking to running workloads: attach, exec, logs, cp, top, stats.

use super::{io_err, user, Engine, EngineError};
use crate::monitor::client::{self, DataReader, DataWriter, StreamOpts};
use crate::monitor::logs;
use crate::monitor::protocol::Reply;
use crate::monitor::protocol::{self, Request};
use crate::sandbox::{SandboxStats, TopRow};
use crate::spec::{merge_env, ProcessSpec};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub stdin: bool,
    pub detach: bool,
}

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub tail: Option<usize>,
    pub timestamps: bool,
}

/// One side of `cp`.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyTarget {
    Host(PathBuf),
    Container { container: String, path: String },
}

impl CopyTarget {
    /// `NAME:PATH` is a container path; anything with a `/` before the first `:` (or no
    /// `:`) is a host path, as in Docker.
    pub fn parse(s: &str) -> CopyTarget {
        if let Some((c, p)) = s.split_once(':') {
            if !c.is_empty() && !c.contains('/') {
                return CopyTarget::Container {
                    container: c.to_string(),
                    path: p.to_string(),
                };
            }
        }
        CopyTarget::Host(PathBuf::from(s))
    }
}

/// A host path for `cp`, as text (cp's rules look at trailing `/.`).
fn host_path(p: &Path) -> Result<String, EngineError> {
    p.to_str()
        .map(String::from)
        .ok_or_else(|| EngineError::Invalid(format!("{}: not a UTF-8 path", p.display())))
}

/// Writes log pieces to stdout/stderr, with a timestamp at each line start if asked.
struct LogPrinter<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    timestamps: bool,
    at_line_start: [bool; 2],
}

impl LogPrinter<'_> {
    fn print(&mut self, c: &logs::Chunk) {
        let (w, start) = match c.stream {
            logs::Stream::Stdout => (&mut *self.out, &mut self.at_line_start[0]),
            logs::Stream::Stderr => (&mut *self.err, &mut self.at_line_start[1]),
        };
        if !self.timestamps {
            let _ = w.write_all(c.data);
            return;
        }
        let stamp = c.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        for line in c.data.split_inclusive(|b| *b == b'\n') {
            if *start {
                let _ = write!(w, "{stamp} ");
            }
            let _ = w.write_all(line);
            *start = line.ends_with(b"\n");
        }
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
        let _ = self.err.flush();
    }
}

impl Engine {
    pub fn attach(&self, reference: &str) -> Result<Option<i32>, EngineError> {
        let rec = self.get(reference)?;
        if !rec.is_active() {
            return Err(EngineError::Conflict(format!(
                "you cannot attach to a stopped container, start it first ({})",
                rec.name
            )));
        }
        let socket = self.paths.control_socket(&rec.id);
        let mut conn = client::connect(&socket)?;
        let stdin = rec.spec.process.stdin;
        protocol::write_json_line(
            &mut conn,
            &Request::Attach {
                stdin,
                stdout: true,
                stderr: true,
                close_stdin: false,
            },
        )
        .map_err(io_err("cannot attach"))?;
        let end = client::stream(
            conn,
            StreamOpts {
                stdin,
                tty: rec.spec.process.tty,
                detach_keys: stdin,
                proxy_signals: (!rec.spec.process.tty).then_some(socket),
            },
        )?;
        self.finish_stream(&rec.id, end)
    }

    /// Run a second process in a running container; its exit code (None if detached).
    pub fn exec(&self, reference: &str, o: &ExecOptions) -> Result<Option<i32>, EngineError> {
        let rec = self.get(reference)?;
        match rec.state.status {
            crate::state::Status::Running => {}
            crate::state::Status::Paused => {
                return Err(EngineError::Conflict(format!(
                    "container {} is paused, unpause the container before exec",
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
        if o.cmd.is_empty() {
            return Err(EngineError::Invalid("exec needs a command".into()));
        }
        if let Some(w) = o.workdir.as_deref().filter(|w| !w.starts_with('/')) {
            return Err(EngineError::Invalid(format!(
                "the working directory {w:?} is invalid: it needs to be an absolute path"
            )));
        }
        let env = super::create::checked_env(&o.env)?;
        let base = &rec.spec.process;
        let user = match &o.user {
            Some(u) => {
                let layers: Vec<PathBuf> = rec.layers.iter().map(PathBuf::from).collect();
                user::resolve(u, &layers).map_err(EngineError::Invalid)?
            }
            None => base.user.clone(),
        };
        let process = ProcessSpec {
            args: o.cmd.clone(),
            env: merge_env(&base.env, &env),
            cwd: o.workdir.clone().unwrap_or_else(|| base.cwd.clone()),
            user,
            tty: o.tty,
            stdin: o.stdin,
        };
        let mut conn = client::connect(&self.paths.control_socket(&rec.id))?;
        protocol::write_json_line(
            &mut conn,
            &Request::Exec {
                process,
                detach: o.detach,
            },
        )
        .map_err(io_err("cannot send exec"))?;
        let end = client::stream(
            conn,
            StreamOpts {
                stdin: o.stdin && !o.detach,
                tty: o.tty && !o.detach,
                detach_keys: false,
                proxy_signals: None,
            },
        )
        .map_err(|e| match e {
            client::ClientError::Refused(m) => {
                let code = if m.contains("executable file not found") {
                    127
                } else if m.contains("permission denied") {
                    126
                } else {
                    125
                };
                EngineError::StartFailed { message: m, code }
            }
            other => other.into(),
        })?;
        if o.detach {
            return Ok(None);
        }
        self.finish_stream(&rec.id, end)
    }

    /// Print the container's logs (its stdout to `out`, its stderr to `err`), following
    /// them while it runs if asked. Memory stays bounded whatever the log's size: the
    /// start of `--tail N` is found by walking back from the end.
    pub fn logs(
        &self,
        reference: &str,
        o: &LogOptions,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<(), EngineError> {
        let rec = self.get(reference)?;
        if !rec.log_config.keeps_logs() {
            return Err(EngineError::Invalid(format!(
                "container {} has --log-driver none: its output was not kept",
                rec.name
            )));
        }
        let path = self.paths.log_path(&rec.id);
        let mut printer = LogPrinter {
            out,
            err,
            timestamps: o.timestamps,
            at_line_start: [true, true],
        };
        let mut pos = logs::read(&path, o.tail, &mut |c| printer.print(&c))
            .map_err(io_err("cannot read the log"))?;
        printer.flush();
        if !o.follow {
            return Ok(());
        }
        loop {
            let active = match self.store.load(&rec.id) {
                Ok(r) => self.reconcile(r).is_active(),
                Err(_) => false,
            };
            pos = logs::read_since(&path, pos, &mut |c| printer.print(&c))
                .map_err(io_err("cannot read the log"))?;
            printer.flush();
            if !active {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The guest kernel's serial console (vm containers; empty for process ones).
    pub fn console_log(&self, reference: &str) -> Result<String, EngineError> {
        let rec = self.get(reference)?;
        let p = self.paths.container_dir(&rec.id).join("console.log");
        Ok(std::fs::read_to_string(p).unwrap_or_default())
    }

    /// `cp` in either direction.
    pub fn copy(&self, src: &CopyTarget, dst: &CopyTarget) -> Result<(), EngineError> {
        match (src, dst) {
            (CopyTarget::Container { container, path }, CopyTarget::Host(dest)) => {
                let rec = self.require_copyable(container)?;
                let dest = host_path(dest)?;
                let top = crate::cptar::top_name(path);
                let top = top.as_deref().or(Some("."));
                let wrap = |e: std::io::Error| {
                    EngineError::Invalid(format!(
                        "copying {container}:{path}: {}",
                        crate::monitor::error_chain(&e)
                    ))
                };
                if rec.state.status != crate::state::Status::Running {
                    let mut h = self.cp_helper(&rec, path, false)?;
                    let mut r = h.child.stdout.take().expect("piped");
                    let res = crate::cptar::extract(crate::cptar::Side::Host, &mut r, &dest, top);
                    drop(r);
                    self.cp_finish(&rec, path, h)?;
                    return res.map_err(wrap);
                }
                let mut conn = client::connect(&self.paths.control_socket(&rec.id))?;
                protocol::write_json_line(&mut conn, &Request::CopyOut { path: path.clone() })
                    .map_err(io_err("cannot request the copy"))?;
                let mut reader = DataReader::new(conn);
                crate::cptar::extract(crate::cptar::Side::Host, &mut reader, &dest, top)
                    .map_err(wrap)
            }
            (CopyTarget::Host(source), CopyTarget::Container { container, path }) => {
                if std::fs::symlink_metadata(source).is_err() {
                    return Err(EngineError::Invalid(format!(
                        "no such file or directory: {}",
                        source.display()
                    )));
                }
                let rec = self.require_copyable(container)?;
                if rec.state.status != crate::state::Status::Running {
                    let mut h = self.cp_helper(&rec, path, true)?;
                    let mut w = h.child.stdin.take().expect("piped");
                    let res = crate::cptar::pack(crate::cptar::Side::Host, &host_path(source)?, &mut w);
                    drop(w);
                    self.cp_finish(&rec, path, h)?;
                    return res.map_err(io_err(format!("cannot read {}", source.display())));
                }
                let mut conn = client::connect(&self.paths.control_socket(&rec.id))?;
                protocol::write_json_line(&mut conn, &Request::CopyIn { path: path.clone() })
                    .map_err(io_err("cannot request the copy"))?;
                let mut w = DataWriter::new(conn);
                crate::cptar::pack(crate::cptar::Side::Host, &host_path(source)?, &mut w)
                    .map_err(io_err(format!("cannot read {}", source.display())))?;
                w.finish().map_err(|e| match e {
                    client::ClientError::Refused(m) => {
                        EngineError::Invalid(format!("copying to {container}:{path}: {m}"))
                    }
                    other => other.into(),
                })
            }
            _ => Err(EngineError::Invalid(
                "copying between two containers or two host paths is not supported: one side must be CONTAINER:PATH".into(),
            )),
        }
    }

    fn require_copyable(
        &self,
        reference: &str,
    ) -> Result<crate::state::ContainerRecord, EngineError> {
        let rec = self.get(reference)?;
        // Running: through its monitor; created or exited: through its root on the
        // host (see cp_stopped); paused: its processes are frozen mid-write.
        if rec.state.status == crate::state::Status::Paused {
            return Err(EngineError::Conflict(format!(
                "container {} is paused: unpause it to copy",
                rec.name
            )));
        }
        Ok(rec)
    }

    pub fn top(&self, reference: &str) -> Result<Vec<TopRow>, EngineError> {
        let rec = self.get(reference)?;
        if !rec.is_active() {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                rec.name
            )));
        }
        match client::request(&self.paths.control_socket(&rec.id), &Request::Top)? {
            Reply::Top { rows } => Ok(rows),
            other => Err(unexpected(other)),
        }
    }

    pub fn stats(&self, reference: &str) -> Result<SandboxStats, EngineError> {
        let rec = self.get(reference)?;
        if !rec.is_active() {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                rec.name
            )));
        }
        match client::request(&self.paths.control_socket(&rec.id), &Request::Stats)? {
            Reply::Stats { stats } => Ok(stats),
            other => Err(unexpected(other)),
        }
    }
}

/// A monitor's reply that does not answer the request (a monitor of another version).
fn unexpected(r: Reply) -> EngineError {
    EngineError::Invalid(format!("unexpected reply from the monitor: {r:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_targets() {
        assert_eq!(
            CopyTarget::parse("web:/etc/hosts"),
            CopyTarget::Container {
                container: "web".into(),
                path: "/etc/hosts".into()
            }
        );
        assert_eq!(
            CopyTarget::parse("./a:b"),
            CopyTarget::Host(PathBuf::from("./a:b"))
        );
        assert_eq!(
            CopyTarget::parse("/tmp/x"),
            CopyTarget::Host(PathBuf::from("/tmp/x"))
        );
    }
}
