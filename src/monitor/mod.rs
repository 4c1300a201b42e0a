//! The per-container supervisor. One detached process per running container owns the
//! sandbox for its whole life: it keeps stdout/stderr in the log file, serves the
//! control socket (attach, exec, cp, pause, stop, top, stats), waits for the workload,
//! records the exit code, and removes `--rm` containers. For `vm` the VMM runs here.

pub mod client;
pub mod logs;
pub mod protocol;
mod server;
mod start;

use crate::paths::Paths;
use crate::sandbox::{ExitInfo, Sandbox, SandboxError};
use crate::state::{Status, Store};
use protocol::{write_frame, Kind, Request};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What the monitor tells the process that started it, one JSON line on the ready pipe.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Ready {
    pub ok: bool,
    #[serde(default)]
    pub error: String,
    /// Exit code `run` should use on failure (125/126/127).
    #[serde(default)]
    pub code: i32,
}

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

fn log_line(paths: &Paths, id: &str, msg: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(paths.monitor_log(id))
    {
        let _ = writeln!(f, "{} {msg}", chrono::Utc::now().to_rfc3339());
    }
}

type ReadyPipe = Arc<Mutex<Option<File>>>;

fn send_ready(ready: &ReadyPipe, r: &Ready) {
    let mut g = ready.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = g.as_mut() {
        let _ = protocol::write_json_line(f, r);
    }
    *g = None;
}

/// A line the starter reads before the final `Ready`: one start-up step and its cost.
pub fn phase_line(name: &str, ms: f64) -> String {
    format!("phase\t{name}\t{ms:.3}\n")
}

/// Parse a `phase_line`.
pub fn parse_phase(line: &str) -> Option<(String, f64)> {
    let mut it = line.trim_end().split('\t');
    (it.next()? == "phase").then_some(())?;
    let name = it.next()?.to_string();
    let ms = it.next()?.parse().ok()?;
    Some((name, ms))
}

fn rusage(who: i32) -> (f64, u64) {
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

/// Accept the first client (for foreground `run`/`start -a`), so no output is missed.
/// Gives up after 30 s, or at once if the starter went away (the read end of `ready`
/// closed: a killed `run`): the container then runs unattended, as Docker's does.
fn accept_first(listener: &UnixListener, ready: Option<&File>) -> Option<(UnixStream, Request)> {
    use std::os::fd::AsFd;
    let mut fds = vec![nix::poll::PollFd::new(
        listener.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    if let Some(r) = ready {
        // No events asked: POLLERR comes by itself when the pipe has no reader.
        fds.push(nix::poll::PollFd::new(
            r.as_fd(),
            nix::poll::PollFlags::empty(),
        ));
    }
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(30_000u16)) {
        Ok(n) if n > 0 => {}
        _ => return None,
    }
    if !fds[0]
        .revents()
        .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN))
    {
        return None;
    }
    let (mut c, _) = listener.accept().ok()?;
    let req: Request = protocol::read_json_line(&mut c).ok()?;
    Some((c, req))
}

/// The monitor's main: returns the process exit status.
/// `creating` is the creation lock of a container `run` just made: held until the
/// start is recorded, so the container is never taken for half-made meanwhile.
pub fn run(
    paths: &Paths,
    id: &str,
    attach_first: bool,
    ready: Option<File>,
    creating: Option<crate::state::Creating>,
) -> i32 {
    // SAFETY: setting a signal disposition; no handler involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let ready: ReadyPipe = Arc::new(Mutex::new(ready));
    let store = match Store::open(&paths.root) {
        Ok(s) => s,
        Err(e) => {
            send_ready(
                &ready,
                &Ready {
                    ok: false,
                    error: e.to_string(),
                    code: 125,
                },
            );
            return 125;
        }
    };
    let rec = match store.load(id) {
        Ok(r) => r,
        Err(e) => {
            send_ready(
                &ready,
                &Ready {
                    ok: false,
                    error: e.to_string(),
                    code: 125,
                },
            );
            return 125;
        }
    };
    let run_dir = paths.run_dir(id);
    let sock_path = paths.control_socket(id);
    let _ = std::fs::create_dir_all(&run_dir);
    let _ = std::fs::remove_file(&sock_path);
    let listener = match UnixListener::bind(&sock_path) {
        Ok(l) => l,
        Err(e) => {
            send_ready(
                &ready,
                &Ready {
                    ok: false,
                    error: format!("control socket {}: {e}", sock_path.display()),
                    code: 125,
                },
            );
            return 125;
        }
    };
    let mut first = None;
    if attach_first {
        if let Some(f) = ready.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = f.write_all(b"listening\n");
        }
        let g = ready.lock().unwrap_or_else(|e| e.into_inner());
        let r = g.as_ref().and_then(|f| f.try_clone().ok());
        drop(g);
        first = accept_first(&listener, r.as_ref());
    }

    let phases: Arc<Mutex<Vec<(String, f64)>>> = Arc::new(Mutex::new(Vec::new()));
    let trace: crate::sandbox::Trace = {
        let phases = phases.clone();
        let ready = ready.clone();
        Arc::new(move |name: &str, d: Duration| {
            let ms = d.as_secs_f64() * 1e3;
            phases
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((name.to_string(), ms));
            if let Some(f) = ready.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                let _ = f.write_all(phase_line(name, ms).as_bytes());
            }
        })
    };
    let dns_sock: Arc<Mutex<Option<crate::network::session::DnsSockets>>> = Arc::default();
    let mut net_session = None;
    let started = network_start(paths, &store, &rec).and_then(|s| {
        let r = start::start_backend(paths, &store, &rec, &s, &dns_sock, trace);
        net_session = Some(s);
        r
    });
    let (sandbox, io) = match started {
        Ok(s) => s,
        Err(e) => {
            let msg = error_chain(&e);
            log_line(paths, id, &format!("start failed: {msg}"));
            let _ = store.update(id, |r| r.state.error = msg.clone());
            if let Some((mut c, _)) = first {
                let _ = write_frame(&mut c, Kind::Error, msg.as_bytes());
                let _ = write_frame(&mut c, Kind::Exit, &protocol::exit_payload(e.exit_code()));
            }
            send_ready(
                &ready,
                &Ready {
                    ok: false,
                    error: msg,
                    code: e.exit_code(),
                },
            );
            drop(net_session);
            crate::network::session::remove_devices(&rec);
            let _ = std::fs::remove_dir_all(&run_dir);
            return e.exit_code();
        }
    };
    let net_session = net_session.unwrap_or(crate::network::session::Session {
        bridges: Vec::new(),
        reservations: Vec::new(),
    });
    let published: Vec<_> = net_session
        .reservations
        .iter()
        .map(|r| r.mapping.clone())
        .collect();
    let me = std::process::id() as i32;
    let pid = sandbox.pid();
    // Runtime status: if a power loss takes it back, reconciliation finds the monitor gone.
    let _ = store.update_volatile(id, |r| {
        r.state.status = Status::Running;
        r.state.pid = pid;
        r.state.monitor_pid = me;
        r.state.monitor_start = crate::util::proc::start_time(me).unwrap_or(0);
        r.state.started_at = Some(chrono::Utc::now());
        r.state.finished_at = None;
        r.state.exit_code = None;
        r.state.oom_killed = false;
        r.state.error.clear();
        r.state.ports = published.clone();
    });
    if let Some(c) = creating {
        c.finish(&paths.container_dir(id));
    }
    if !published.is_empty() {
        if let Err(e) = crate::network::session::publish(&paths.root, &store) {
            // The ports cannot be published: the start fails as a whole.
            let msg = error_chain(&e);
            log_line(paths, id, &format!("start failed: {msg}"));
            let _ = sandbox.kill();
            let _ = sandbox.wait();
            sandbox.cleanup();
            let _ = store.update(id, |r| {
                r.state = crate::state::ContainerState::default();
                r.state.error = msg.clone();
            });
            crate::network::session::unpublish(&paths.root, &store, true);
            crate::network::session::remove_devices(&rec);
            if let Some((mut c, _)) = first {
                let _ = write_frame(&mut c, Kind::Error, msg.as_bytes());
                let _ = write_frame(&mut c, Kind::Exit, &protocol::exit_payload(125));
            }
            send_ready(
                &ready,
                &Ready {
                    ok: false,
                    error: msg,
                    code: 125,
                },
            );
            let _ = std::fs::remove_dir_all(&run_dir);
            return 125;
        }
    }
    if let Some(socks) = dns_sock.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let resolver: Arc<dyn crate::network::dns::Resolver> = Arc::new(
            crate::network::session::StoreResolver::new(store.clone(), id),
        );
        let r = resolver.clone();
        std::thread::spawn(move || crate::network::dns::serve_udp(socks.udp, r.as_ref()));
        std::thread::spawn(move || crate::network::dns::serve_tcp(socks.tcp, resolver));
    }
    let shared = Arc::new(Shared {
        sandbox,
        attachers: Mutex::new(Vec::new()),
        stdin: Mutex::new(io.stdin),
        exit: Mutex::new(None),
        exit_cv: Condvar::new(),
        pending: Mutex::new(0),
        pending_cv: Condvar::new(),
        store: store.clone(),
        id: id.to_string(),
        next_attacher: Mutex::new(0),
    });
    send_ready(
        &ready,
        &Ready {
            ok: true,
            error: String::new(),
            code: 0,
        },
    );

    // The first client registers before output is pumped, so it misses nothing.
    if let Some((c, req)) = first {
        server::spawn_handler(&shared, c, req);
    }
    let pumps = server::start_pumps(&shared, paths, io.stdout, io.stderr);
    server::spawn_accept_loop(&shared, listener);

    let info = shared.sandbox.wait();
    // Let the output drain (the pipes close when the last process holding them dies).
    for p in pumps {
        let _ = p.recv_timeout(Duration::from_secs(3));
    }
    log_line(paths, id, &format!("workload exited with {}", info.code));
    let (monitor_cpu_ms, monitor_max_rss) = rusage(libc::RUSAGE_SELF);
    // A microVM's VMM is a process of its own: what the host spends on it counts here.
    let monitor_max_rss = monitor_max_rss + shared.sandbox.helper_max_rss();
    let (workload_cpu_ms, children_max_rss) = rusage(libc::RUSAGE_CHILDREN);
    // The workload's peak memory as its cgroup saw it (vm: inside the guest, not here);
    // where the cgroup keeps no figure, the largest child's peak RSS.
    let workload_max_rss = match shared.sandbox.stats().map(|s| s.memory_peak) {
        Ok(p) if p > 0 => p,
        _ => children_max_rss,
    };
    let guest = shared.sandbox.guest_memory();
    let metrics = crate::sandbox::Metrics {
        phases: phases.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        monitor_cpu_ms,
        monitor_max_rss,
        workload_cpu_ms,
        workload_max_rss: if guest.is_some() { 0 } else { workload_max_rss },
        guest_ram: guest.map(|g| g.0),
        guest_resident: guest.map(|g| g.1),
    };
    let auto_remove = store.load(id).map(|r| r.auto_remove).unwrap_or(false);
    // A --rm container is removed right after: its final record need not reach the disk.
    let record_exit = |f: &dyn Fn(&mut crate::state::ContainerRecord)| {
        if auto_remove {
            store.update_volatile(id, f)
        } else {
            store.update(id, f)
        }
    };
    // The sandbox is torn down (cgroup gone, VM and its virtiofsds stopped) before the
    // record says exited: stop, rm and restart act on an exited record only.
    shared.sandbox.cleanup();
    let _ = record_exit(&|r| {
        r.state.status = Status::Exited;
        r.state.exit_code = Some(info.code);
        r.state.oom_killed = info.oom_killed;
        r.state.finished_at = Some(chrono::Utc::now());
        r.state.pid = 0;
        r.state.metrics = Some(metrics.clone());
    });
    let final_rec = store.load(id).unwrap_or_else(|_| rec.clone());
    crate::network::session::unpublish(&paths.root, &store, !published.is_empty());
    drop(net_session);
    if auto_remove {
        let _ = store.remove(id);
        crate::network::session::release_leases(&paths.root, &final_rec);
        crate::engine::release_anonymous(&paths.root, &final_rec);
    }
    // Runtime files go before anyone hears of the exit, so a caller that returns on
    // the exit finds nothing left (open connections keep working without the path).
    let _ = std::fs::remove_dir_all(&run_dir);
    {
        *shared.exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
        shared.exit_cv.notify_all();
    }
    shared.broadcast(Kind::Exit, &protocol::exit_payload(info.code));
    // Give requests that wait for the exit the time to answer.
    let mut g = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while *g > 0 && std::time::Instant::now() < deadline {
        g = shared
            .pending_cv
            .wait_timeout(g, Duration::from_millis(50))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(g);
    crate::network::session::remove_devices(&final_rec);
    0
}

pub use crate::util::error_chain;

/// Bridges, reserved ports and /etc/hosts (with links) before the sandbox starts.
fn network_start(
    paths: &Paths,
    store: &Store,
    rec: &crate::state::ContainerRecord,
) -> Result<crate::network::session::Session, SandboxError> {
    use crate::network::session;
    let err = |e: crate::network::NetworkError| SandboxError::Other(error_chain(&e));
    let s = session::prepare(&paths.root, store, rec).map_err(err)?;
    if rec.spec.network == crate::spec::NetworkMode::Bridge {
        let hosts = session::hosts_file(store, rec).map_err(err)?;
        std::fs::write(paths.container_dir(&rec.id).join("hosts"), hosts)?;
    }
    Ok(s)
}

impl From<SandboxError> for Ready {
    fn from(e: SandboxError) -> Ready {
        Ready {
            ok: false,
            code: e.exit_code(),
            error: error_chain(&e),
        }
    }
}

/// A container whose monitor died (killed, crashed): record it as exited and release
/// what the monitor would have released. Returns the updated record (None if removed).
pub fn reap_dead(paths: &Paths, store: &Store, id: &str) -> Option<crate::state::ContainerRecord> {
    let rec = store.load(id).ok()?;
    if !rec.is_active() || crate::util::proc::alive(rec.state.monitor_pid, rec.state.monitor_start)
    {
        return Some(rec);
    }
    if rec.spec.isolation == crate::spec::Isolation::Process {
        if let Ok(cg) = crate::process::cgroups::manager(id) {
            let _ = cg.thaw();
            let _ = cg.kill_all();
            let _ = cg.destroy();
        }
    }
    let _ = std::fs::remove_dir_all(paths.run_dir(id));
    log_line(paths, id, "monitor found dead; container marked exited");
    if rec.auto_remove {
        let _ = store.remove(id);
        crate::network::session::unpublish(&paths.root, store, !rec.state.ports.is_empty());
        crate::network::session::remove_devices(&rec);
        crate::network::session::release_leases(&paths.root, &rec);
        crate::engine::release_anonymous(&paths.root, &rec);
        return None;
    }
    let out = store
        .update(id, |r| {
            if r.is_active() {
                r.state.status = Status::Exited;
                r.state.exit_code = Some(137);
                r.state.pid = 0;
                r.state.finished_at = Some(chrono::Utc::now());
                r.state.error =
                    "the container's monitor process died; the workload was killed with it".into();
                r.state.ports.clear();
            }
        })
        .ok();
    crate::network::session::unpublish(&paths.root, store, !rec.state.ports.is_empty());
    crate::network::session::remove_devices(&rec);
    out
}
