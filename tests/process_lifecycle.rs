//! The detached lifecycle under process isolation: logs, exec, pause, cp, stop, rm.

mod common;
use common::*;

fn log_lines(tb: &Tb, c: &str) -> usize {
    tb.ok(&["logs", c]).lines().count()
}

#[test]
fn detached_lifecycle_like_docker() {
    let tb = Tb::new();
    let id = tb
        .ok(&[
            "run",
            "-d",
            "--name",
            "ticker",
            "busybox",
            "sh",
            "-c",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    assert!(eventually(5, || log_lines(&tb, "ticker") >= 3));

    // ps shows it running, by name, with its isolation
    let ps = tb.ok(&["ps", "--format", "{{.Names}} {{.State}} {{.Isolation}}"]);
    assert_eq!(ps, "ticker running process\n");

    // logs --tail, -t
    let tail = tb.ok(&["logs", "--tail", "2", "ticker"]);
    assert_eq!(tail.lines().count(), 2);
    let ts = tb.ok(&["logs", "-t", "--tail", "1", "ticker"]);
    assert!(ts.starts_with("20") && ts.contains("Z tick"), "{ts}");

    // exec: output, exit code, env and workdir flags
    assert_eq!(
        tb.ok(&["exec", "ticker", "echo", "from-exec"]),
        "from-exec\n"
    );
    assert_eq!(
        tb.out(&["exec", "ticker", "sh", "-c", "exit 5"])
            .status
            .code(),
        Some(5)
    );
    assert_eq!(
        tb.ok(&[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "ticker",
            "sh",
            "-c",
            "echo $X $(pwd)"
        ]),
        "1 /tmp\n"
    );
    assert_eq!(
        tb.ok(&["exec", "-u", "nobody", "ticker", "id", "-u"]),
        "65534\n"
    );
    let o = tb.with_stdin(&["exec", "-i", "ticker", "cat"], b"piped");
    assert_eq!(stdout(&o), "piped");
    // exec -d leaves a process behind in the container
    tb.ok(&["exec", "-d", "ticker", "sleep", "77"]);
    assert!(eventually(5, || tb
        .ok(&["top", "ticker"])
        .contains("sleep 77")));

    // pause: the process really stops making progress
    tb.ok(&["pause", "ticker"]);
    assert_eq!(tb.ok(&["ps", "--format", "{{.State}}"]), "paused\n");
    let before = log_lines(&tb, "ticker");
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(
        log_lines(&tb, "ticker"),
        before,
        "a paused container made progress"
    );
    tb.fails(&["exec", "ticker", "true"], 125, "paused");
    tb.ok(&["unpause", "ticker"]);
    assert!(eventually(5, || log_lines(&tb, "ticker") > before));

    // cp both ways, files and directories
    let host = tb.dir.path().join("hostdir");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    std::fs::write(host.join("sub/f.txt"), "payload").unwrap();
    tb.ok(&["cp", host.to_str().unwrap(), "ticker:/tmp/in"]);
    assert_eq!(
        tb.ok(&["exec", "ticker", "cat", "/tmp/in/sub/f.txt"]),
        "payload"
    );
    tb.ok(&[
        "exec",
        "ticker",
        "sh",
        "-c",
        "mkdir -p /out/d && echo back > /out/d/g",
    ]);
    let dest = tb.dir.path().join("fromctr");
    tb.ok(&["cp", "ticker:/out", dest.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(dest.join("d/g")).unwrap(), "back\n");
    let single = tb.dir.path().join("hostname.copy");
    tb.ok(&["cp", "ticker:/etc/hostname", single.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&single).unwrap(),
        format!("{}\n", &id[..12])
    );

    // inspect
    let v: serde_json::Value = serde_json::from_str(&tb.ok(&["inspect", "ticker"])).unwrap();
    assert_eq!(v[0]["Id"], id.as_str());
    assert_eq!(v[0]["Name"], "/ticker");
    assert_eq!(v[0]["State"]["Status"], "running");
    assert_eq!(v[0]["Isolation"], "process");
    assert!(v[0]["State"]["Pid"].as_i64().unwrap() > 0);

    // stop -t 1: sh as PID 1 ignores SIGTERM, so it is killed after the grace period
    tb.ok(&["stop", "-t", "1", "ticker"]);
    let v: serde_json::Value = serde_json::from_str(&tb.ok(&["inspect", "ticker"])).unwrap();
    assert_eq!(v[0]["State"]["Status"], "exited");
    assert_eq!(v[0]["State"]["ExitCode"], 137);
    // logs survive the exit
    assert!(log_lines(&tb, "ticker") > 3);

    // restart, rename, wait, rm
    tb.ok(&["restart", "-t", "1", "ticker"]);
    assert_eq!(tb.ok(&["ps", "--format", "{{.Names}}"]), "ticker\n");
    tb.ok(&["rename", "ticker", "tocker"]);
    tb.ok(&["kill", "tocker"]);
    assert_eq!(tb.ok(&["wait", "tocker"]), "137\n");
    tb.ok(&["rm", "tocker"]);
    tb.assert_clean(&[id]);
}

#[test]
fn stop_lets_a_cooperative_workload_exit_cleanly() {
    let tb = Tb::new();
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    tb.ok(&["stop", "-t", "10", "polite"]);
    let v: serde_json::Value = serde_json::from_str(&tb.ok(&["inspect", "polite"])).unwrap();
    assert_eq!(v[0]["State"]["ExitCode"], 0);
    assert!(tb.ok(&["logs", "polite"]).contains("bye"));
    let id = v[0]["Id"].as_str().unwrap().to_string();
    tb.ok(&["rm", "polite"]);
    tb.assert_clean(&[id]);
}

#[test]
fn create_start_attach_and_prune() {
    let tb = Tb::new();
    let id = tb.ok(&[
        "create",
        "--name",
        "later",
        "busybox",
        "sh",
        "-c",
        "echo ran; exit 4",
    ]);
    let id = id.trim().to_string();
    assert_eq!(tb.ok(&["ps", "-a", "--format", "{{.State}}"]), "created\n");
    let o = tb.out(&["start", "-a", "later"]);
    assert_eq!(stdout(&o), "ran\n");
    assert_eq!(o.status.code(), Some(4));
    tb.ok(&["create", "busybox", "true"]);
    let pruned = tb.ok(&["container", "prune", "-f"]);
    assert!(pruned.contains(&id), "{pruned}");
    assert_eq!(tb.ok(&["ps", "-a", "-q"]), "");
    tb.assert_clean(&[id]);
}

#[test]
fn a_killed_monitor_is_reported_truthfully() {
    let tb = Tb::new();
    let id = tb
        .ok(&["run", "-d", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&tb.ok(&["inspect", &id])).unwrap();
    let monitor = v[0]["State"]["MonitorPid"].as_i64().unwrap() as i32;
    let comm = std::fs::read_to_string(format!("/proc/{monitor}/comm")).unwrap();
    assert_eq!(comm.trim(), "tb-monitor", "one monitor per container");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    assert!(eventually(5, || tb
        .ok(&["ps", "-a", "--format", "{{.State}}"])
        .trim()
        == "exited"));
    let v: serde_json::Value = serde_json::from_str(&tb.ok(&["inspect", &id])).unwrap();
    assert_eq!(v[0]["State"]["ExitCode"], 137);
    assert!(v[0]["State"]["Error"].as_str().unwrap().contains("monitor"));
    assert!(eventually(5, || processes_mentioning("sleep 1000")
        .is_empty()
        || !std::fs::read_to_string(format!(
            "/proc/{}/cgroup",
            processes_mentioning("sleep 1000")[0]
        ))
        .unwrap_or_default()
        .contains(&id)));
    tb.ok(&["rm", &id]);
    tb.assert_clean(&[id]);
}

#[test]
fn the_leak_check_sees_a_running_monitor() {
    // assert_clean must notice a monitor left behind: monitors are forked, not
    // exec'd, so they are found by the state root in their environment.
    let tb = Tb::new();
    let id = tb
        .ok(&["run", "-d", "--network", "none", "busybox", "sleep", "60"])
        .trim()
        .to_string();
    let root = tb.dir.path().display().to_string();
    let found = processes_of(&root);
    assert!(
        !found.is_empty(),
        "the running container's monitor is not seen"
    );
    let comms: Vec<String> = found
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).ok())
        .map(|c| c.trim().to_string())
        .collect();
    assert!(comms.iter().any(|c| c == "tb-monitor"), "{comms:?}");
    tb.ok(&["rm", "-f", &id]);
    tb.assert_clean(&[id]);
}
