//! The monitor's threads: output pumps (workload -> log + attachers) and the control
//! socket (one thread per connection).

use super::logs::{LogWriter, Stream};
use super::protocol::{self, read_frame, write_frame, Kind, Reply, Request};
use super::Shared;
use crate::paths::Paths;
use crate::sandbox::{ExecProcess, SandboxError};
use crate::state::Status;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Read a workload stream until EOF (a pty gives EIO when the last writer closes).
fn read_chunks(mut r: File, mut each: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => each(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

/// The threads copying the workload's output to the log and the attachers.
pub struct Pumps {
    /// Each fires when its stream reached EOF.
    done: Vec<Receiver<()>>,
    /// Bytes copied so far, by all of them.
    progress: Arc<AtomicU64>,
}

impl Pumps {
    /// After the workload exited: wait until every stream reached EOF, or until no byte
    /// has moved for `idle` (a process the workload left behind still holds a pipe: it
    /// is killed with the sandbox right after). A backlog still flowing is waited for,
    /// so the log ends with the workload's last words — but never past `most`: output
    /// that never stops (a guest that keeps sending after its exit) cannot hold the
    /// teardown up.
    pub fn drain(&self, idle: Duration, most: Duration) {
        let tick = Duration::from_millis(50).min(idle);
        let deadline = std::time::Instant::now() + most;
        let mut last = self.progress.load(Ordering::Relaxed);
        let mut still = Duration::ZERO;
        for rx in &self.done {
            loop {
                match rx.recv_timeout(tick) {
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {}
                }
                if std::time::Instant::now() >= deadline {
                    return;
                }
                let now = self.progress.load(Ordering::Relaxed);
                if now == last {
                    still += tick;
                    if still >= idle {
                        return;
                    }
                } else {
                    last = now;
                    still = Duration::ZERO;
                }
            }
        }
    }
}

/// Start the threads copying the workload's output to the log and the attachers.
pub fn start_pumps(
    shared: &Arc<Shared>,
    paths: &Paths,
    stdout: File,
    stderr: Option<File>,
) -> Pumps {
    let cfg = shared
        .store
        .load(&shared.id)
        .map(|r| r.log_config)
        .unwrap_or_default();
    let log = Arc::new(Mutex::new(if cfg.keeps_logs() {
        LogWriter::open(&paths.log_path(&shared.id), &cfg).ok()
    } else {
        None
    }));
    let mut done = Vec::new();
    let progress = Arc::new(AtomicU64::new(0));
    for (file, kind, name) in [
        (Some(stdout), Kind::Stdout, Stream::Stdout),
        (stderr, Kind::Stderr, Stream::Stderr),
    ] {
        let Some(file) = file else { continue };
        let (tx, rx) = channel();
        let shared = shared.clone();
        let log = log.clone();
        let moved = progress.clone();
        thread::spawn(move || {
            read_chunks(file, |chunk| {
                if let Some(l) = log.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    let _ = l.write(name, chunk);
                }
                shared.broadcast(kind, chunk);
                moved.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            });
            let _ = tx.send(());
        });
        done.push(rx);
    }
    Pumps { done, progress }
}

pub fn spawn_accept_loop(shared: &Arc<Shared>, listener: UnixListener) {
    let shared = shared.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let shared = shared.clone();
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let req: Request = match protocol::read_json_line(&mut conn) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = protocol::write_json_line(
                            &mut conn,
                            &Reply::Refused {
                                error: format!("bad request: {e}"),
                            },
                        );
                        return;
                    }
                };
                let _ = conn.set_read_timeout(None);
                spawn_handler(&shared, conn, req);
            });
        }
    });
}

/// Serve one request. Attach registers synchronously so no output is missed.
pub fn spawn_handler(shared: &Arc<Shared>, conn: UnixStream, req: Request) {
    if let Request::Attach {
        stdin,
        stdout,
        stderr,
        close_stdin,
    } = req
    {
        let Ok(out) = conn.try_clone() else { return };
        let aid = shared.add_attacher(out, stdout, stderr);
        let shared = shared.clone();
        thread::spawn(move || attach_input(&shared, conn, aid, stdin, close_stdin));
        return;
    }
    let shared = shared.clone();
    thread::spawn(move || handle(&shared, conn, req));
}

fn attach_input(shared: &Shared, mut conn: UnixStream, aid: u64, stdin: bool, close_stdin: bool) {
    if let Some(info) = *shared.exit.lock().unwrap_or_else(|e| e.into_inner()) {
        let _ = write_frame(&mut conn, Kind::Exit, &protocol::exit_payload(info.code));
        return;
    }
    loop {
        match read_frame(&mut conn) {
            Ok(Some((Kind::Stdin, data))) if stdin => {
                let mut g = shared.stdin.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(f) = g.as_mut() {
                    if f.write_all(&data).is_err() {
                        *g = None;
                    }
                }
            }
            Ok(Some((Kind::StdinEof, _))) => {
                if stdin && close_stdin {
                    *shared.stdin.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
            }
            Ok(Some((Kind::Resize, p))) => {
                if let Some((r, c)) = protocol::parse_resize(&p) {
                    shared.sandbox.resize(r, c);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    shared.remove_attacher(aid);
}

struct Pending<'a>(&'a Shared);

impl<'a> Pending<'a> {
    fn new(s: &'a Shared) -> Pending<'a> {
        *s.pending.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Pending(s)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        *self.0.pending.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.pending_cv.notify_all();
    }
}

fn reply(conn: &mut UnixStream, r: Result<Reply, SandboxError>) {
    let resp = r.unwrap_or_else(|e| Reply::Refused {
        error: super::error_chain(&e),
    });
    let _ = protocol::write_json_line(conn, &resp);
}

/// `cp` out of the container: its tar stream as Data frames.
fn copy_out(sb: &dyn crate::sandbox::Sandbox, mut conn: UnixStream, path: &str) {
    let mut w = FrameWriter {
        conn: conn.try_clone().ok(),
        buf: Vec::new(),
    };
    let r = sb.copy_out(path, &mut w);
    let _ = w.flush();
    finish_copy(&mut conn, r);
}

/// `cp` into the container: the client's Data frames as a tar stream.
fn copy_in(sb: &dyn crate::sandbox::Sandbox, mut conn: UnixStream, path: &str) {
    let mut r = FrameReader {
        conn: conn.try_clone().ok(),
        buf: Vec::new(),
        pos: 0,
        eof: false,
    };
    let res = sb.copy_in(path, &mut r);
    // Drain what the client still sends so it is not blocked.
    let _ = io::copy(&mut r, &mut io::sink());
    finish_copy(&mut conn, res);
}

fn handle(shared: &Shared, mut conn: UnixStream, req: Request) {
    let sb = &shared.sandbox;
    // Every request is answered before the monitor exits.
    let mut pending = Some(Pending::new(shared));
    match req {
        Request::Attach { .. } => {}
        Request::Wait => {
            let info = shared.wait_exit(None);
            reply(
                &mut conn,
                Ok(Reply::Exited {
                    exit_code: info.map(|i| i.code),
                }),
            );
        }
        Request::Kill { signal } => {
            // SIGKILL takes the whole sandbox down (a paused one too).
            let r = if signal == libc::SIGKILL {
                sb.kill()
            } else {
                sb.signal(signal)
            }
            .map(|_| Reply::Done);
            reply(&mut conn, r);
        }
        Request::Stop { signal, timeout } => {
            let _ = sb.signal(signal);
            let mut info = shared.wait_exit(Some(Duration::from_secs(timeout)));
            if info.is_none() {
                let _ = sb.kill();
                info = shared.wait_exit(Some(Duration::from_secs(15)));
            }
            let r = match info {
                Some(i) => Ok(Reply::Exited {
                    exit_code: Some(i.code),
                }),
                None => Err(SandboxError::Other("the container did not stop".into())),
            };
            reply(&mut conn, r);
        }
        Request::Pause => {
            let r = sb.pause().map(|_| {
                shared.set_status(Status::Paused);
                Reply::Done
            });
            reply(&mut conn, r);
        }
        Request::Resume => {
            let r = sb.resume().map(|_| {
                shared.set_status(Status::Running);
                Reply::Done
            });
            reply(&mut conn, r);
        }
        Request::Resize { rows, cols } => {
            sb.resize(rows, cols);
            reply(&mut conn, Ok(Reply::Done));
        }
        Request::Top => {
            let r = sb.top().map(|rows| Reply::Top { rows });
            reply(&mut conn, r);
        }
        Request::Stats => {
            let r = sb.stats().map(|stats| Reply::Stats { stats });
            reply(&mut conn, r);
        }
        Request::Exec { process, detach } => match sb.exec(&process) {
            Err(e) => {
                let _ = write_frame(&mut conn, Kind::Error, super::error_chain(&e).as_bytes());
                let _ = write_frame(
                    &mut conn,
                    Kind::Exit,
                    &protocol::exit_payload(e.exit_code()),
                );
            }
            Ok(ep) if detach => {
                let _ = write_frame(&mut conn, Kind::Exit, &protocol::exit_payload(0));
                pending.take();
                let _ = ep.wait();
            }
            Ok(ep) => stream_exec(ep, conn),
        },
        Request::CopyOut { path } => copy_out(sb.as_ref(), conn, &path),
        Request::CopyIn { path } => copy_in(sb.as_ref(), conn, &path),
    }
}

fn finish_copy(conn: &mut UnixStream, r: Result<(), SandboxError>) {
    match r {
        Ok(()) => {
            let _ = write_frame(conn, Kind::DataEof, &[]);
            let _ = write_frame(conn, Kind::Exit, &protocol::exit_payload(0));
        }
        Err(e) => {
            let _ = write_frame(conn, Kind::Error, super::error_chain(&e).as_bytes());
            let _ = write_frame(conn, Kind::Exit, &protocol::exit_payload(1));
        }
    }
}

/// Pump an exec's stdio over the connection until it exits.
fn stream_exec(mut ep: Box<dyn ExecProcess>, conn: UnixStream) {
    let Some(io) = ep.take_io() else { return };
    let Ok(out_conn) = conn.try_clone() else {
        return;
    };
    let out_conn = Arc::new(Mutex::new(out_conn));
    let mut pumps = Vec::new();
    for (file, kind) in [(Some(io.stdout), Kind::Stdout), (io.stderr, Kind::Stderr)] {
        let Some(file) = file else { continue };
        let c = out_conn.clone();
        let (tx, rx) = channel::<()>();
        thread::spawn(move || {
            read_chunks(file, |chunk| {
                let mut g = c.lock().unwrap_or_else(|e| e.into_inner());
                let _ = write_frame(&mut *g, kind, chunk);
            });
            let _ = tx.send(());
        });
        pumps.push(rx);
    }
    let stdin = Arc::new(Mutex::new(io.stdin));
    let ep: Arc<dyn ExecProcess> = Arc::from(ep);
    {
        let stdin = stdin.clone();
        let ep = ep.clone();
        let mut conn = conn;
        thread::spawn(move || loop {
            match read_frame(&mut conn) {
                Ok(Some((Kind::Stdin, data))) => {
                    if let Some(f) = stdin.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                        let _ = f.write_all(&data);
                    }
                }
                Ok(Some((Kind::StdinEof, _))) => {
                    *stdin.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                Ok(Some((Kind::Resize, p))) => {
                    if let Some((r, c)) = protocol::parse_resize(&p) {
                        ep.resize(r, c);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        });
    }
    let code = ep.wait().unwrap_or(126);
    for p in pumps {
        let _ = p.recv_timeout(Duration::from_secs(2));
    }
    *stdin.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let mut g = out_conn.lock().unwrap_or_else(|e| e.into_inner());
    let _ = write_frame(&mut *g, Kind::Exit, &protocol::exit_payload(code));
}

/// `Write` that sends Data frames.
struct FrameWriter {
    conn: Option<UnixStream>,
    buf: Vec<u8>,
}

impl Write for FrameWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let c = self.conn.as_mut().ok_or(io::ErrorKind::BrokenPipe)?;
        write_frame(c, Kind::Data, &self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// `Read` over Data frames, ending at DataEof.
struct FrameReader {
    conn: Option<UnixStream>,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl Read for FrameReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if self.eof {
                return Ok(0);
            }
            let c = self.conn.as_mut().ok_or(io::ErrorKind::BrokenPipe)?;
            match read_frame(c)? {
                Some((Kind::Data, d)) => {
                    self.buf = d;
                    self.pos = 0;
                }
                _ => {
                    self.eof = true;
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeSandbox;
    use super::*;
    use crate::state::{ContainerRecord, Store};

    /// A monitor around `sb` whose main thread records the exit as the real one does.
    fn monitor(sb: &FakeSandbox) -> (Arc<Shared>, tempfile::TempDir) {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        store
            .insert(&ContainerRecord::for_test("c1", "web"))
            .unwrap();
        let shared = Arc::new(Shared::new(Box::new(sb.clone()), None, store, "c1"));
        let s = shared.clone();
        thread::spawn(move || {
            let info = s.sandbox.wait();
            *s.exit.lock().unwrap() = Some(info);
            s.exit_cv.notify_all();
        });
        (shared, d)
    }

    /// Send `req` as a client would; the one-line reply.
    fn ask(shared: &Arc<Shared>, req: Request) -> Reply {
        let (mut client, server) = UnixStream::pair().unwrap();
        spawn_handler(shared, server, req);
        protocol::read_json_line(&mut client).unwrap()
    }

    #[test]
    fn draining_waits_for_a_backlog_that_still_flows_but_not_for_a_held_pipe() {
        // A stream still moving bytes is waited for past the idle limit.
        let (tx, rx) = channel();
        let progress = Arc::new(AtomicU64::new(0));
        let p = progress.clone();
        thread::spawn(move || {
            for _ in 0..8 {
                thread::sleep(Duration::from_millis(25));
                p.fetch_add(1, Ordering::Relaxed);
            }
            let _ = tx.send(());
        });
        let pumps = Pumps {
            done: vec![rx],
            progress: progress.clone(),
        };
        pumps.drain(Duration::from_millis(100), Duration::from_secs(30));
        assert_eq!(progress.load(Ordering::Relaxed), 8, "drained to the end");
        // A pipe held open with nothing flowing is given up after the idle limit.
        let (_tx, rx) = channel::<()>();
        let pumps = Pumps {
            done: vec![rx],
            progress: Arc::new(AtomicU64::new(0)),
        };
        let t = std::time::Instant::now();
        pumps.drain(Duration::from_millis(100), Duration::from_secs(30));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn output_that_never_stops_cannot_hold_the_teardown_up() {
        let (_tx, rx) = channel::<()>();
        let progress = Arc::new(AtomicU64::new(0));
        let p = progress.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let flood = thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                p.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(5));
            }
        });
        let pumps = Pumps {
            done: vec![rx],
            progress,
        };
        let t = std::time::Instant::now();
        pumps.drain(Duration::from_millis(100), Duration::from_millis(400));
        let took = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        flood.join().unwrap();
        assert!(
            took >= Duration::from_millis(400),
            "gave up early: {took:?}"
        );
        assert!(took < Duration::from_secs(5), "held up: {took:?}");
    }

    #[test]
    fn wait_answers_with_the_exit_code() {
        let sb = FakeSandbox::default();
        let (m, _d) = monitor(&sb);
        let s2 = sb.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            s2.end(3)
        });
        assert_eq!(ask(&m, Request::Wait), Reply::Exited { exit_code: Some(3) });
    }

    #[test]
    fn sigkill_takes_the_whole_sandbox_down_other_signals_are_delivered() {
        let sb = FakeSandbox::default();
        let (m, _d) = monitor(&sb);
        assert_eq!(
            ask(
                &m,
                Request::Kill {
                    signal: libc::SIGHUP
                }
            ),
            Reply::Done
        );
        assert_eq!(sb.calls(), ["signal 1"]);
        assert_eq!(
            ask(
                &m,
                Request::Kill {
                    signal: libc::SIGKILL
                }
            ),
            Reply::Done
        );
        assert_eq!(sb.calls(), ["signal 1", "kill"]);
    }

    #[test]
    fn stop_is_graceful_when_the_workload_obeys() {
        let sb = FakeSandbox::dying_on(&[libc::SIGTERM]);
        let (m, _d) = monitor(&sb);
        let r = ask(
            &m,
            Request::Stop {
                signal: libc::SIGTERM,
                timeout: 10,
            },
        );
        assert_eq!(
            r,
            Reply::Exited {
                exit_code: Some(143)
            }
        );
        assert_eq!(sb.calls(), ["signal 15"]);
    }

    #[test]
    fn stop_kills_a_workload_that_ignores_the_signal_after_the_timeout() {
        let sb = FakeSandbox::default();
        let (m, _d) = monitor(&sb);
        let r = ask(
            &m,
            Request::Stop {
                signal: libc::SIGTERM,
                timeout: 0,
            },
        );
        assert_eq!(
            r,
            Reply::Exited {
                exit_code: Some(137)
            }
        );
        assert_eq!(sb.calls(), ["signal 15", "kill"]);
    }

    #[test]
    fn pause_and_resume_are_recorded_in_the_state() {
        let sb = FakeSandbox::default();
        let (m, _d) = monitor(&sb);
        assert_eq!(ask(&m, Request::Pause), Reply::Done);
        assert_eq!(m.store.load("c1").unwrap().state.status, Status::Paused);
        assert_eq!(ask(&m, Request::Resume), Reply::Done);
        assert_eq!(m.store.load("c1").unwrap().state.status, Status::Running);
        assert_eq!(sb.calls(), ["pause", "resume"]);
    }

    #[test]
    fn a_failed_request_is_refused_with_why_and_changes_nothing() {
        let mut sb = FakeSandbox::default();
        sb.pause_fails = Some("the cgroup is gone".into());
        let (m, _d) = monitor(&sb);
        match ask(&m, Request::Pause) {
            Reply::Refused { error } => assert!(error.contains("the cgroup is gone")),
            other => panic!("{other:?}"),
        }
        assert_ne!(m.store.load("c1").unwrap().state.status, Status::Paused);
    }

    #[test]
    fn top_and_stats_answer_typed() {
        let sb = FakeSandbox::default();
        let (m, _d) = monitor(&sb);
        match ask(&m, Request::Top) {
            Reply::Top { rows } => assert_eq!(rows[0].cmd, "sleep 60"),
            other => panic!("{other:?}"),
        }
        match ask(&m, Request::Stats) {
            Reply::Stats { stats } => assert_eq!(stats.pids, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_exec_that_cannot_start_ends_with_an_error_and_127() {
        let sb = FakeSandbox::default();
        let (m, _d) = monitor(&sb);
        let (mut client, server) = UnixStream::pair().unwrap();
        let process = crate::spec::ProcessSpec {
            args: vec!["nope".into()],
            ..Default::default()
        };
        spawn_handler(
            &m,
            server,
            Request::Exec {
                process,
                detach: false,
            },
        );
        let (k, msg) = read_frame(&mut client).unwrap().unwrap();
        assert_eq!(k, Kind::Error);
        assert!(String::from_utf8_lossy(&msg).contains("nope"));
        let (k, code) = read_frame(&mut client).unwrap().unwrap();
        assert_eq!((k, code), (Kind::Exit, 127i32.to_be_bytes().to_vec()));
    }

    #[test]
    fn an_attach_after_the_exit_hears_it_at_once() {
        let sb = FakeSandbox::default();
        let (m, _d) = monitor(&sb);
        sb.end(5);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while m.exit.lock().unwrap().is_none() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let (mut client, server) = UnixStream::pair().unwrap();
        spawn_handler(
            &m,
            server,
            Request::Attach {
                stdin: false,
                stdout: true,
                stderr: true,
                close_stdin: false,
            },
        );
        let (k, code) = read_frame(&mut client).unwrap().unwrap();
        assert_eq!((k, code), (Kind::Exit, 5i32.to_be_bytes().to_vec()));
    }

    #[test]
    fn a_bad_request_line_is_refused() {
        let sb = FakeSandbox::default();
        let (m, _d) = monitor(&sb);
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("s");
        let l = UnixListener::bind(&sock).unwrap();
        spawn_accept_loop(&m, l);
        let mut c = UnixStream::connect(&sock).unwrap();
        c.write_all(b"{\"op\":\"format_disk\"}\n").unwrap();
        match protocol::read_json_line::<Reply>(&mut c).unwrap() {
            Reply::Refused { error } => assert!(error.contains("bad request"), "{error}"),
            other => panic!("{other:?}"),
        }
    }
}
