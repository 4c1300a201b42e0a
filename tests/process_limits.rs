//! cgroup limits under process isolation: memory (OOM kill), pids (fork bomb), cpus.

mod common;
use common::*;

#[test]
fn memory_hog_is_oom_killed_and_reported() {
    let tb = Tb::new();
    let o = tb.out(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=a; while true; do x=\"$x$x\"; done",
    ]);
    assert_eq!(o.status.code(), Some(137));
    let v: serde_json::Value = serde_json::from_str(&tb.ok(&["inspect", "hog"])).unwrap();
    assert_eq!(v[0]["State"]["OOMKilled"], true);
    assert_eq!(v[0]["HostConfig"]["Memory"], 32 * 1024 * 1024);
    let id = v[0]["Id"].as_str().unwrap().to_string();
    tb.ok(&["rm", "hog"]);
    tb.assert_clean(&[id]);
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let tb = Tb::new();
    let id = tb
        .ok(&[
            "run",
            "-d",
            "--pids-limit",
            "20",
            "busybox",
            "sh",
            "-c",
            "sleep 1000 & (bomb() { bomb | bomb & }; bomb); wait",
        ])
        .trim()
        .to_string();
    // The sleep forks first and the bomb runs in a subshell: the workload (waiting for
    // the sleep) stays up however the bomb's forks fail. (With the bomb in the main
    // shell, a fork failing in the main shell itself ended the workload now and then.)
    std::thread::sleep(std::time::Duration::from_secs(2));
    let stats = tb.ok(&["stats", "--no-stream", &id]);
    let pids: u64 = stats
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pids <= 20, "pids limit not enforced: {pids}");
    tb.ok(&["rm", "-f", &id]);
    tb.assert_clean(&[id]);
}

#[test]
fn cpus_and_memory_are_written_to_the_cgroup() {
    let tb = Tb::new();
    let id = tb
        .ok(&[
            "run", "-d", "--cpus", "0.5", "--memory", "64m", "busybox", "sleep", "100",
        ])
        .trim()
        .to_string();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    match twinbox::process::cgroups::probe_layout(&mounts).unwrap() {
        twinbox::process::cgroups::Layout::V1(ctrls) => {
            let cpu = &ctrls.iter().find(|(n, _)| n == "cpu").unwrap().1;
            let q = std::fs::read_to_string(cpu.join("twinbox").join(&id).join("cpu.cfs_quota_us"))
                .unwrap();
            assert_eq!(q.trim(), "50000");
            let mem = &ctrls.iter().find(|(n, _)| n == "memory").unwrap().1;
            let m = std::fs::read_to_string(
                mem.join("twinbox").join(&id).join("memory.limit_in_bytes"),
            )
            .unwrap();
            assert_eq!(m.trim(), (64 << 20).to_string());
        }
        twinbox::process::cgroups::Layout::V2(root) => {
            let d = root.join("twinbox").join(&id);
            assert_eq!(
                std::fs::read_to_string(d.join("cpu.max")).unwrap().trim(),
                "50000 100000"
            );
            assert_eq!(
                std::fs::read_to_string(d.join("memory.max"))
                    .unwrap()
                    .trim(),
                (64 << 20).to_string()
            );
        }
    }
    tb.ok(&["rm", "-f", &id]);
    tb.assert_clean(&[id]);
}

#[test]
fn cpuset_cpus_confines_the_workload() {
    let tb = Tb::new();
    let last = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .unwrap()
        .trim()
        .rsplit(['-', ','])
        .next()
        .unwrap()
        .to_string();
    // The kernel's own view from inside: the allowed list is just that CPU.
    let out = tb.ok(&[
        "run",
        "--name",
        "pinned",
        "--cpuset-cpus",
        &last,
        "busybox",
        "grep",
        "Cpus_allowed_list",
        "/proc/self/status",
    ]);
    assert_eq!(out.split_whitespace().last(), Some(last.as_str()), "{out}");
    let v: serde_json::Value = serde_json::from_str(&tb.ok(&["inspect", "pinned"])).unwrap();
    assert_eq!(v[0]["HostConfig"]["CpusetCpus"], last.as_str());
    let id = v[0]["Id"].as_str().unwrap().to_string();
    tb.ok(&["rm", "pinned"]);
    // Without the flag: every CPU the host has.
    let all = tb.ok(&[
        "run",
        "--rm",
        "busybox",
        "grep",
        "Cpus_allowed_list",
        "/proc/self/status",
    ]);
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    assert_eq!(all.split_whitespace().last(), Some(online.trim()), "{all}");
    // Bad input: one line, nothing created.
    tb.fails(
        &["run", "--rm", "--cpuset-cpus", "4000", "busybox", "true"],
        125,
        "not available",
    );
    tb.fails(
        &["run", "--rm", "--cpuset-cpus", "1-0", "busybox", "true"],
        125,
        "invalid --cpuset-cpus",
    );
    assert!(tb.all_ids().is_empty());
    tb.assert_clean(&[id]);
}
