//! The monitor's life, in order: open the container → (foreground: first client) →
//! network and backend → recorded running → ports published → serve until the
//! workload exits → metrics → teardown. Every way out goes through
//! [`crate::teardown`].

use super::protocol::{self, write_frame, Kind, Request};
use super::report::Reporter;
use super::{log_line, rusage, server, start, Shared};
use crate::network::session::{self, Session};
use crate::paths::Paths;
use crate::phase::Phase;
use crate::sandbox::{ExitInfo, Metrics, Sandbox, SandboxError, WorkloadIo};
use crate::state::{ContainerRecord, Status, Store};
use crate::teardown::{self, Host, Occasion, Resources, Step};
use crate::util::error_chain;
use std::fs::File;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    let reporter = Reporter::new(ready);
    let (store, rec, listener) = match open(paths, id) {
        Ok(x) => x,
        Err(msg) => {
            reporter.failed(msg, 125);
            return 125;
        }
    };
    let first = if attach_first {
        reporter.listening();
        accept_first(&listener, reporter.pipe().as_ref())
    } else {
        None
    };
    let phases: Arc<Mutex<Vec<(Phase, f64)>>> = Arc::default();
    let trace: crate::sandbox::Trace = {
        let phases = phases.clone();
        let reporter = reporter.clone();
        Arc::new(move |phase: Phase, d: Duration| {
            let ms = d.as_secs_f64() * 1e3;
            phases
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((phase, ms));
            reporter.phase(phase, ms);
        })
    };
    let mut ending = Ending {
        paths,
        store: &store,
        rec: &rec,
        sandbox: None,
        first,
        reporter: &reporter,
        shared: None,
    };
    let dns_sock: Arc<Mutex<Option<session::DnsSockets>>> = Arc::default();
    let (net, sandbox, io) = match start_sandbox(paths, &store, &rec, &dns_sock, trace) {
        Ok(s) => s,
        Err(e) => return ending.start_failed(error_chain(&e), e.exit_code(), false, false),
    };
    let published = record_running(paths, &store, &rec, sandbox.as_ref(), &net, creating);
    if published {
        if let Err(e) = session::publish(&paths.root, &store) {
            // The ports cannot be published: the start fails as a whole.
            ending.sandbox = Some(sandbox.as_ref());
            return ending.start_failed(error_chain(&e), 125, true, true);
        }
    }
    serve_dns(&store, id, &dns_sock);
    let shared = Arc::new(Shared::new(sandbox, io.stdin, store.clone(), id));
    reporter.started();
    // The first client registers before output is pumped, so it misses nothing.
    if let Some((c, req)) = ending.first.take() {
        server::spawn_handler(&shared, c, req);
    }
    let pumps = server::start_pumps(&shared, paths, io.stdout, io.stderr);
    server::spawn_accept_loop(&shared, listener);

    let info = shared.sandbox.wait();
    // Let the output drain (the pipes close when the last process holding them dies).
    pumps.drain(Duration::from_secs(3), Duration::from_secs(60));
    log_line(paths, id, &format!("workload exited with {}", info.code));
    let metrics = collect_metrics(shared.sandbox.as_ref(), &phases);
    let auto_remove = store.load(id).map(|r| r.auto_remove).unwrap_or(false);
    ending.sandbox = Some(shared.sandbox.as_ref());
    ending.shared = Some((&shared, info));
    let occasion = Occasion::Exited {
        info,
        metrics,
        auto_remove,
        published,
    };
    for (step, e) in teardown::run(&mut ending, &occasion) {
        log_line(paths, id, &format!("teardown: {step:?}: {e}"));
    }
    wait_pending(&shared);
    drop(net);
    0
}

/// The store, the container's record and its control socket.
fn open(paths: &Paths, id: &str) -> Result<(Store, ContainerRecord, UnixListener), String> {
    let store = Store::open(&paths.root).map_err(|e| e.to_string())?;
    let rec = store.load(id).map_err(|e| e.to_string())?;
    let sock_path = paths.control_socket(id);
    let _ = std::fs::create_dir_all(paths.run_dir(id));
    let _ = std::fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path)
        .map_err(|e| format!("control socket {}: {e}", sock_path.display()))?;
    Ok((store, rec, listener))
}

/// Bridges, reserved ports and /etc/hosts (with links), then the backend. On error
/// nothing of the network session is held (dropped here).
fn start_sandbox(
    paths: &Paths,
    store: &Store,
    rec: &ContainerRecord,
    dns: &Arc<Mutex<Option<session::DnsSockets>>>,
    trace: crate::sandbox::Trace,
) -> Result<(Session, Box<dyn Sandbox>, WorkloadIo), SandboxError> {
    let err = |e: crate::network::NetworkError| SandboxError::Other(error_chain(&e));
    let net = session::prepare(&paths.root, store, rec).map_err(err)?;
    if rec.spec.network == crate::spec::NetworkMode::Bridge {
        let hosts = session::hosts_file(store, rec).map_err(err)?;
        std::fs::write(paths.container_dir(&rec.id).join("hosts"), hosts)?;
    }
    let (sandbox, io) = start::start_backend(paths, store, rec, &net, dns, trace)?;
    Ok((net, sandbox, io))
}

/// Record the container running (volatile: if a power loss takes it back, the next
/// command finds the monitor gone), and let go of the creation lock. Returns whether
/// it has ports to publish.
fn record_running(
    paths: &Paths,
    store: &Store,
    rec: &ContainerRecord,
    sandbox: &dyn Sandbox,
    net: &Session,
    creating: Option<crate::state::Creating>,
) -> bool {
    let published: Vec<_> = net.reservations.iter().map(|r| r.mapping.clone()).collect();
    let me = std::process::id() as i32;
    let pid = sandbox.pid();
    let _ = store.update_volatile(&rec.id, |r| {
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
        c.finish(&paths.container_dir(&rec.id));
    }
    !published.is_empty()
}

/// The embedded DNS server of a process container on a user network.
fn serve_dns(store: &Store, id: &str, sockets: &Mutex<Option<session::DnsSockets>>) {
    if let Some(socks) = sockets.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let resolver: Arc<dyn crate::network::dns::Resolver> =
            Arc::new(session::StoreResolver::new(store.clone(), id));
        let r = resolver.clone();
        std::thread::spawn(move || crate::network::dns::serve_udp(socks.udp, r.as_ref()));
        std::thread::spawn(move || crate::network::dns::serve_tcp(socks.tcp, resolver));
    }
}

/// What the run cost: start-up phases, the monitor's (and VMM's) CPU and memory, the
/// workload's.
fn collect_metrics(sandbox: &dyn Sandbox, phases: &Mutex<Vec<(Phase, f64)>>) -> Metrics {
    let (monitor_cpu_ms, monitor_max_rss) = rusage(libc::RUSAGE_SELF);
    // A microVM's VMM is a process of its own: what the host spends on it counts here.
    let monitor_max_rss = monitor_max_rss + sandbox.helper_max_rss();
    let (workload_cpu_ms, children_max_rss) = rusage(libc::RUSAGE_CHILDREN);
    // The workload's peak memory as its cgroup saw it (vm: inside the guest, not here);
    // where the cgroup keeps no figure, the largest child's peak RSS.
    let workload_max_rss = match sandbox.stats().map(|s| s.memory_peak) {
        Ok(p) if p > 0 => p,
        _ => children_max_rss,
    };
    let guest = sandbox.guest_memory();
    Metrics {
        phases: phases.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        monitor_cpu_ms,
        monitor_max_rss,
        workload_cpu_ms,
        workload_max_rss: if guest.is_some() { 0 } else { workload_max_rss },
        guest_ram: guest.map(|g| g.0),
        guest_resident: guest.map(|g| g.1),
    }
}

/// Give requests that wait for the exit the time to answer.
fn wait_pending(shared: &Shared) {
    let mut g = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
    let deadline = Instant::now() + Duration::from_secs(5);
    while *g > 0 && Instant::now() < deadline {
        g = shared
            .pending_cv
            .wait_timeout(g, Duration::from_millis(50))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// The monitor's side of a teardown: it holds the sandbox and the clients; the rest
/// is [`Resources`].
struct Ending<'a> {
    paths: &'a Paths,
    store: &'a Store,
    rec: &'a ContainerRecord,
    sandbox: Option<&'a dyn Sandbox>,
    /// The foreground client, until it is served.
    first: Option<(UnixStream, Request)>,
    reporter: &'a Reporter,
    /// After a run: the clients to tell of the exit.
    shared: Option<(&'a Arc<Shared>, ExitInfo)>,
}

impl Ending<'_> {
    /// A start that failed: log it, take the container apart, return the exit code.
    fn start_failed(&mut self, msg: String, code: i32, sandbox: bool, published: bool) -> i32 {
        log_line(self.paths, &self.rec.id, &format!("start failed: {msg}"));
        let occasion = Occasion::StartFailed {
            error: msg,
            code,
            sandbox,
            published,
        };
        for (step, e) in teardown::run(self, &occasion) {
            log_line(
                self.paths,
                &self.rec.id,
                &format!("teardown: {step:?}: {e}"),
            );
        }
        code
    }
}

impl Host for Ending<'_> {
    fn take(&mut self, step: Step, occasion: &Occasion) -> Result<(), String> {
        match (step, occasion) {
            (Step::StopSandbox, _) => {
                if let Some(sb) = self.sandbox {
                    if matches!(occasion, Occasion::StartFailed { .. }) {
                        let _ = sb.kill();
                        let _ = sb.wait();
                    }
                    // Torn down (cgroup gone, VM and its virtiofsds stopped) before the
                    // record says exited: stop, rm and restart act on an exited record.
                    sb.cleanup();
                }
                Ok(())
            }
            (Step::Announce, Occasion::StartFailed { error, code, .. }) => {
                if let Some((mut c, _)) = self.first.take() {
                    let _ = write_frame(&mut c, Kind::Error, error.as_bytes());
                    let _ = write_frame(&mut c, Kind::Exit, &protocol::exit_payload(*code));
                }
                self.reporter.failed(error.clone(), *code);
                Ok(())
            }
            (Step::Announce, _) => {
                if let Some((shared, info)) = self.shared {
                    *shared.exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(info);
                    shared.exit_cv.notify_all();
                    shared.broadcast(Kind::Exit, &protocol::exit_payload(info.code));
                }
                Ok(())
            }
            (step, occasion) => Resources {
                paths: self.paths,
                store: self.store,
                id: &self.rec.id,
                rec: Some(self.rec),
            }
            .take(step, occasion),
        }
    }
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

/// A container whose monitor died (killed, crashed): record it as exited and release
/// what the monitor would have released. Returns the updated record (None if removed).
pub fn reap_dead(paths: &Paths, store: &Store, id: &str) -> Option<ContainerRecord> {
    let rec = store.load(id).ok()?;
    if !rec.is_active() || crate::util::proc::alive(rec.state.monitor_pid, rec.state.monitor_start)
    {
        return Some(rec);
    }
    log_line(paths, id, "monitor found dead; container marked exited");
    let occasion = Occasion::MonitorDead {
        auto_remove: rec.auto_remove,
        published: !rec.state.ports.is_empty(),
    };
    let mut host = Resources {
        paths,
        store,
        id,
        rec: Some(&rec),
    };
    teardown::run(&mut host, &occasion);
    if rec.auto_remove {
        return None;
    }
    store.load(id).ok()
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeSandbox;
    use super::*;
    use std::io::{BufRead, BufReader};

    struct Fixture {
        _d: tempfile::TempDir,
        paths: Paths,
        store: Store,
        rec: ContainerRecord,
    }

    fn fixture(auto_remove: bool) -> Fixture {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::new(&d.path().join("root"), &d.path().join("run"));
        let store = Store::open(&paths.root).unwrap();
        let mut rec = ContainerRecord::for_test("c1", "web");
        rec.auto_remove = auto_remove;
        store.insert(&rec).unwrap();
        std::fs::create_dir_all(paths.run_dir("c1")).unwrap();
        Fixture {
            _d: d,
            paths,
            store,
            rec,
        }
    }

    fn reports(r: File) -> Vec<protocol::StartReport> {
        BufReader::new(r)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn a_start_that_fails_after_the_sandbox_kills_it_and_tells_the_starter_and_the_client() {
        let f = fixture(false);
        let sb = FakeSandbox::default();
        let (r, w) = crate::init::pipe().unwrap();
        let reporter = Reporter::new(Some(w));
        let (mut client, server) = UnixStream::pair().unwrap();
        let mut ending = Ending {
            paths: &f.paths,
            store: &f.store,
            rec: &f.rec,
            sandbox: Some(&sb),
            first: Some((server, Request::Wait)),
            reporter: &reporter,
            shared: None,
        };
        let code = ending.start_failed("port 80 is taken".into(), 125, true, false);
        drop(ending);
        drop(reporter);
        assert_eq!(code, 125);
        assert_eq!(sb.calls(), ["kill", "cleanup"]);
        let rec = f.store.load("c1").unwrap();
        assert_eq!(rec.state.status, Status::Created);
        assert_eq!(rec.state.error, "port 80 is taken");
        assert!(!f.paths.run_dir("c1").exists());
        assert_eq!(
            reports(r),
            [protocol::StartReport::Failed {
                error: "port 80 is taken".into(),
                code: 125
            }]
        );
        let (k, msg) = protocol::read_frame(&mut client).unwrap().unwrap();
        assert_eq!((k, msg), (Kind::Error, b"port 80 is taken".to_vec()));
        let (k, c) = protocol::read_frame(&mut client).unwrap().unwrap();
        assert_eq!((k, c), (Kind::Exit, 125i32.to_be_bytes().to_vec()));
    }

    #[test]
    fn a_start_that_fails_in_the_backend_keeps_its_code_and_has_nothing_to_stop() {
        let f = fixture(false);
        let (r, w) = crate::init::pipe().unwrap();
        let reporter = Reporter::new(Some(w));
        let mut ending = Ending {
            paths: &f.paths,
            store: &f.store,
            rec: &f.rec,
            sandbox: None,
            first: None,
            reporter: &reporter,
            shared: None,
        };
        let code = ending.start_failed("exec: \"nope\": not found".into(), 127, false, false);
        drop(ending);
        drop(reporter);
        assert_eq!(code, 127);
        assert!(matches!(
            reports(r).as_slice(),
            [protocol::StartReport::Failed { code: 127, .. }]
        ));
        assert!(f.store.load("c1").unwrap().state.error.contains("nope"));
    }

    fn exit_with(f: &Fixture, sb: &FakeSandbox, auto_remove: bool) -> Arc<Shared> {
        let shared = Arc::new(Shared::new(
            Box::new(sb.clone()),
            None,
            f.store.clone(),
            "c1",
        ));
        let reporter = Reporter::default();
        let info = ExitInfo {
            code: 3,
            oom_killed: false,
        };
        let mut ending = Ending {
            paths: &f.paths,
            store: &f.store,
            rec: &f.rec,
            sandbox: Some(sb),
            first: None,
            reporter: &reporter,
            shared: Some((&shared, info)),
        };
        let occasion = Occasion::Exited {
            info,
            metrics: Metrics {
                phases: vec![(Phase::Clone, 1.0)],
                ..Default::default()
            },
            auto_remove,
            published: false,
        };
        assert!(teardown::run(&mut ending, &occasion).is_empty());
        shared
    }

    #[test]
    fn an_exit_is_recorded_with_its_metrics_after_the_sandbox_is_torn_down_then_announced() {
        let f = fixture(false);
        let sb = FakeSandbox::default();
        let shared = exit_with(&f, &sb, false);
        assert_eq!(sb.calls(), ["cleanup"], "an exited workload is not killed");
        let rec = f.store.load("c1").unwrap();
        assert_eq!(rec.state.status, Status::Exited);
        assert_eq!(rec.state.exit_code, Some(3));
        assert_eq!(rec.state.metrics.unwrap().phases, [(Phase::Clone, 1.0)]);
        assert!(!f.paths.run_dir("c1").exists());
        assert_eq!(
            shared.wait_exit(Some(Duration::ZERO)).map(|i| i.code),
            Some(3)
        );
    }

    #[test]
    fn an_rm_container_leaves_no_record_behind() {
        let f = fixture(true);
        let sb = FakeSandbox::default();
        exit_with(&f, &sb, true);
        assert!(f.store.load("c1").is_err());
        assert!(!f.paths.run_dir("c1").exists());
    }

    #[test]
    fn a_container_whose_monitor_died_is_recorded_exited_137_with_why() {
        let f = fixture(false);
        f.store
            .update("c1", |r| {
                r.state.status = Status::Running;
                r.state.monitor_pid = i32::MAX;
            })
            .unwrap();
        let rec = reap_dead(&f.paths, &f.store, "c1").unwrap();
        assert_eq!(rec.state.status, Status::Exited);
        assert_eq!(rec.state.exit_code, Some(137));
        assert!(rec.state.error.contains("monitor"));
        assert!(!f.paths.run_dir("c1").exists());
        // A live one is left alone.
        let f = fixture(false);
        let me = std::process::id() as i32;
        f.store
            .update("c1", |r| {
                r.state.status = Status::Running;
                r.state.monitor_pid = me;
                r.state.monitor_start = crate::util::proc::start_time(me).unwrap();
            })
            .unwrap();
        let rec = reap_dead(&f.paths, &f.store, "c1").unwrap();
        assert_eq!(rec.state.status, Status::Running);
    }
}
