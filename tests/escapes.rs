//! The escape suite: a hostile process container attacks the host the ways issue 13
//! found, and every attack must fail. Each test prints what it tried and how often it
//! got through (always 0), so a CI log shows the attack really ran.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

fn tool(tb: &Tb, name: &str) -> PathBuf {
    escape_tool(tb.dir.path(), name)
}

/// `inspect NAME` as JSON (its one object).
fn inspect(tb: &Tb, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&tb.ok(&["inspect", name])).unwrap();
    v[0].clone()
}

fn unique(tag: &str) -> String {
    format!("tb-escape-{tag}-{}", std::process::id())
}

#[test]
fn cp_racing_exec_never_reaches_the_host() {
    let tb = Tb::new();
    let flip = tool(&tb, "flip");
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "victim",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    tb.ok(&["cp", flip.to_str().unwrap(), "victim:/flip"]);
    // Inside: /tmp/evil -> /proc/<newest pid>/root/tmp, re-pointed without pause.
    tb.ok(&["exec", "-d", "victim", "/flip", "/tmp/evil", "tmp"]);
    assert!(eventually(5, || tb
        .out(&["exec", "victim", "readlink", "/tmp/evil"])
        .stdout
        .starts_with(b"/proc/")));

    let marker = unique("cp");
    let secret = Path::new("/tmp").join(format!("{marker}-secret"));
    std::fs::write(&secret, b"host secret").unwrap();
    let src = tb.dir.path().join("payload");
    std::fs::write(&src, b"written from a container").unwrap();
    let outdir = tb.dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();

    // Keep new processes appearing in the container while cp runs.
    let stop = AtomicBool::new(false);
    let execs = AtomicUsize::new(0);
    let tries = 200;
    let (mut wrote, mut read) = (0, 0);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if tb.out(&["exec", "victim", "true"]).status.success() {
                    execs.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        for i in 0..tries {
            let name = format!("{marker}-w{i}");
            let _ = tb.out(&[
                "cp",
                src.to_str().unwrap(),
                &format!("victim:/tmp/evil/{name}"),
            ]);
            if Path::new("/tmp").join(&name).exists() {
                wrote += 1;
                let _ = std::fs::remove_file(Path::new("/tmp").join(&name));
            }
            let out = outdir.join(format!("r{i}"));
            let _ = tb.out(&[
                "cp",
                &format!("victim:/tmp/evil/{marker}-secret"),
                out.to_str().unwrap(),
            ]);
            if std::fs::read(&out).is_ok_and(|d| d == b"host secret") {
                read += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let _ = std::fs::remove_file(&secret);
    let execs = execs.load(Ordering::Relaxed);
    println!(
        "cp racing exec: {tries} writes and {tries} reads through /tmp/evil while {execs} execs ran: {wrote} host writes, {read} host reads"
    );
    assert!(
        execs > 20,
        "the exec loop hardly ran ({execs}): the race was not exercised"
    );
    assert_eq!(wrote, 0, "cp wrote into the host's /tmp");
    assert_eq!(read, 0, "cp read a host file");
    // cp itself still works, including into the flipper's own directory.
    tb.ok(&["cp", src.to_str().unwrap(), "victim:/tmp/ok"]);
    assert_eq!(
        tb.ok(&["exec", "victim", "cat", "/tmp/ok"]),
        "written from a container"
    );
    tb.ok(&["rm", "-f", "victim"]);
    tb.assert_clean(&[]);
}

#[test]
fn exec_never_shows_the_host_binary() {
    let tb = Tb::new();
    let exe = tool(&tb, "exe");
    // CAP_SYS_PTRACE is the worst case: without it a non-dumpable helper's /proc files
    // cannot be opened at all.
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "victim",
        "--network",
        "none",
        "--cap-add",
        "SYS_PTRACE",
        "busybox",
        "sleep",
        "1000",
    ]);
    tb.ok(&["cp", exe.to_str().unwrap(), "victim:/exe"]);
    let watcher = tb
        .cmd(&["exec", "victim", "/exe", "8"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut execs = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(6) {
        tb.ok(&["exec", "victim", "sh", "-c", "sleep 0.01"]);
        execs += 1;
    }
    let out = String::from_utf8_lossy(&watcher.wait_with_output().unwrap().stdout).into_owned();
    let host_binary = std::fs::canonicalize(bin()).unwrap();
    let host_binary = host_binary.to_str().unwrap();
    let writes = out.lines().filter(|l| l.starts_with("WRITE-OPEN")).count();
    let shown = out.lines().filter(|l| l.contains(host_binary)).count();
    println!(
        "exe watcher during {execs} execs: {writes} write opens, {shown} sightings of {host_binary}; targets seen:\n{out}"
    );
    assert!(execs >= 20, "too few execs ran ({execs})");
    assert!(
        out.contains("exe /bin/busybox"),
        "the watcher saw none of the exec'd processes: {out}"
    );
    assert_eq!(shown, 0, "the host's twinbox binary was visible: {out}");
    assert_eq!(writes, 0, "an exe was opened for writing: {out}");
    tb.ok(&["rm", "-f", "victim"]);
}

/// Run `path` as nobody (uid/gid 65534, no groups, no capabilities) and return what it
/// printed, stderr included.
fn as_nobody(args: &[&str]) -> String {
    let o = Command::new("setpriv")
        // Through a shell that already runs as nobody: setpriv's own execve of the
        // program still resolves its path with root's capabilities.
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["sh", "-c", "exec \"$@\"", "sh"])
        .args(args)
        .output()
        .expect("setpriv (util-linux) is needed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file under `dir` with a setuid/setgid bit or file capabilities.
fn privileged_files(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                let caps = xattr_len(&p, "security.capability") > 0;
                if m.permissions().mode() & 0o6000 != 0 || caps {
                    out.push(p);
                }
            }
        }
    }
    out
}

fn xattr_len(p: &Path, name: &str) -> isize {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings; a NULL buffer of size 0 asks for the length.
    unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) }
}

#[test]
fn host_users_reach_nothing_in_the_state_tree() {
    use std::os::unix::fs::PermissionsExt;
    let tb = Tb::new();
    // Like /var/lib: the test's own directory must not be what stops other users.
    std::fs::set_permissions(tb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let probe = tool(&tb, "probe");
    let mkcap = tool(&tb, "mkcap");
    // An image whose layer ships a setuid-root probe.
    let layer = tb.dir.path().join("layer");
    std::fs::create_dir_all(layer.join("bin")).unwrap();
    std::fs::copy(&probe, layer.join("bin/suid-in-layer")).unwrap();
    std::fs::set_permissions(
        layer.join("bin/suid-in-layer"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let tar = tb.dir.path().join("layer.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&layer)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    tb.ok(&["import", tar.to_str().unwrap(), "suidimage:1"]);
    // A container makes a setuid-root and a file-capability probe in its writable
    // layer, and keeps a secret in its environment and its log.
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        "none",
        "-e",
        "SECRET=s3cr3t-env",
        "busybox",
        "sh",
        "-c",
        "echo s3cr3t-log; sleep 1000",
    ]);
    tb.ok(&["cp", probe.to_str().unwrap(), "holder:/bin/suid-in-upper"]);
    tb.ok(&["cp", probe.to_str().unwrap(), "holder:/bin/cap-in-upper"]);
    tb.ok(&["cp", mkcap.to_str().unwrap(), "holder:/mkcap"]);
    tb.ok(&["exec", "holder", "chmod", "4755", "/bin/suid-in-upper"]);
    tb.ok(&["exec", "holder", "/mkcap", "/bin/cap-in-upper"]);
    // The layer is unpacked when a container of the image is made.
    tb.ok(&[
        "create",
        "--network",
        "none",
        "suidimage:1",
        "/bin/suid-in-layer",
    ]);

    let files = privileged_files(&tb.root());
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("upper/bin/suid-in-upper")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("upper/bin/cap-in-upper")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with("bin/suid-in-layer")),
        "{names:?}"
    );
    let mut gained = Vec::new();
    for f in &files {
        let out = as_nobody(&[f.to_str().unwrap()]);
        if out.contains("euid=0") || out.contains("readable") {
            gained.push(format!("{}: {out}", f.display()));
        }
    }
    // Through the container's own root too.
    let pid = inspect(&tb, "holder")["State"]["Pid"].as_i64().unwrap();
    let via_proc = format!("/proc/{pid}/root/bin/suid-in-upper");
    let out = as_nobody(&[&via_proc]);
    if out.contains("euid=0") {
        gained.push(format!("{via_proc}: {out}"));
    }
    // Secrets: the record and the log.
    let grep = as_nobody(&["grep", "-r", "s3cr3t", tb.root().to_str().unwrap()]);
    let ls = as_nobody(&["ls", tb.root().to_str().unwrap()]);
    println!(
        "state tree as nobody: {} privileged files tried, {} gave privileges; grep for secrets: {grep:?}; ls of the root: {ls:?}",
        files.len(),
        gained.len()
    );
    assert!(gained.is_empty(), "privilege gained: {gained:?}");
    assert!(
        !grep.contains("s3cr3t-env") && !grep.contains("s3cr3t-log"),
        "{grep}"
    );
    assert!(grep.contains("Permission denied"), "{grep}");
    assert!(ls.contains("Permission denied"), "{ls}");
    // Root itself still reads it all, and records and logs are owner-only files.
    let id = inspect(&tb, "holder")["Id"].as_str().unwrap().to_string();
    let dir = tb.root().join("containers").join(&id);
    for f in ["config.json", "container.log", "monitor.log"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f} has mode {mode:o}");
    }
    for d in [tb.root(), tb.run_root()] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} has mode {mode:o}", d.display());
    }
    tb.ok(&["rm", "-f", "holder"]);
}

/// `run --rm --network none [flags] busybox sh -c SCRIPT`, its stdout.
fn sh(tb: &Tb, flags: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    tb.ok(&args)
}

fn status_field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {out}"))
        .trim()
        .to_string()
}

#[test]
fn seccomp_is_dockers_by_default() {
    let tb = Tb::new();
    let status = "cat /proc/self/status";
    assert_eq!(status_field(&sh(&tb, &[], status), "Seccomp"), "2");
    assert_eq!(
        status_field(
            &sh(&tb, &["--security-opt", "seccomp=unconfined"], status),
            "Seccomp"
        ),
        "0"
    );
    assert_eq!(
        status_field(&sh(&tb, &["--privileged"], status), "Seccomp"),
        "0"
    );
    // A user namespace (the CVE-2022-0492 precondition) and mounts are refused.
    let out = sh(
        &tb,
        &[],
        "unshare -U true 2>&1; echo rc=$?; unshare -m true 2>&1; echo rc=$?",
    );
    assert_eq!(out.matches("rc=1").count(), 2, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    // The keyring: the host's key cannot be found, no key can be added.
    let keys = tool(&tb, "keys");
    let desc = unique("key");
    let added = Command::new(&keys).args(["add", &desc]).output().unwrap();
    let serial = String::from_utf8_lossy(&added.stdout)
        .trim()
        .strip_prefix("ok ")
        .map(String::from);
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "kk",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    tb.ok(&["cp", keys.to_str().unwrap(), "kk:/keys"]);
    let find = tb.out(&["exec", "kk", "/keys", "find", &desc]);
    let new = tb.out(&["exec", "kk", "/keys", "new"]);
    if let Some(s) = &serial {
        let _ = Command::new(&keys).args(["unlink", s]).output();
    }
    println!(
        "keyring: host key {serial:?}; container find: {:?}; container add: {:?}",
        stdout(&find),
        stdout(&new)
    );
    assert!(
        serial.is_some(),
        "the host could not add its key: {added:?}"
    );
    assert!(stdout(&find).starts_with("refused Operation not permitted"));
    assert!(stdout(&new).starts_with("refused Operation not permitted"));
    let uring = tb.out(&["exec", "kk", "/keys", "uring"]);
    assert!(
        stdout(&uring).starts_with("refused Operation not permitted"),
        "{uring:?}"
    );
    tb.ok(&["rm", "-f", "kk"]);
    // A profile of the user's own, in Docker's format.
    let p = tb.dir.path().join("profile.json");
    std::fs::write(
        &p,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let out = sh(
        &tb,
        &["--security-opt", &format!("seccomp={}", p.display())],
        "mkdir /x 2>&1; echo rc=$?",
    );
    assert!(
        out.contains("Permission denied") && out.contains("rc=1"),
        "{out}"
    );
    std::fs::write(&p, "{ not json").unwrap();
    tb.fails(
        &[
            "run",
            "--rm",
            "--security-opt",
            &format!("seccomp={}", p.display()),
            "busybox",
            "true",
        ],
        125,
        "not valid JSON",
    );
    tb.assert_clean(&[]);
}

#[test]
fn capabilities_privileged_read_only_and_devices() {
    let tb = Tb::new();
    let status = "cat /proc/self/status";
    let eff = |flags: &[&str]| {
        u64::from_str_radix(&status_field(&sh(&tb, flags, status), "CapEff"), 16).unwrap()
    };
    assert_eq!(eff(&["--cap-drop", "ALL"]), 0);
    assert_eq!(eff(&[]), twinbox::init::caps::default_mask());
    assert_eq!(
        eff(&["--cap-drop", "ALL", "--cap-add", "net_admin"]),
        1 << 12
    );
    assert_eq!(
        eff(&["--cap-add", "CAP_SYS_ADMIN", "--cap-drop", "NET_RAW"]),
        (twinbox::init::caps::default_mask() | 1 << 21) & !(1 << 13)
    );
    let bounding = twinbox::init::caps::own_bounding()
        & twinbox::init::caps::all_mask(twinbox::init::caps::last_cap());
    assert_eq!(eff(&["--privileged"]), bounding);
    assert_eq!(
        status_field(&sh(&tb, &[], status), "CapInh"),
        "0000000000000000"
    );
    assert_eq!(
        status_field(
            &sh(&tb, &["--security-opt", "no-new-privileges"], status),
            "NoNewPrivs"
        ),
        "1"
    );
    assert_eq!(status_field(&sh(&tb, &[], status), "NoNewPrivs"), "0");
    // CAP_SYS_ADMIN (with Docker's profile, which then allows mount) mounts; default does not.
    let out = sh(
        &tb,
        &["--cap-add", "SYS_ADMIN"],
        "mkdir /tmp/m && mount -t tmpfs none /tmp/m && echo mounted",
    );
    assert_eq!(out.trim(), "mounted");
    let out = sh(
        &tb,
        &[],
        "mkdir /tmp/m && mount -t tmpfs none /tmp/m 2>&1; echo rc=$?",
    );
    assert!(out.contains("rc=1") || out.contains("rc=255"), "{out}");
    // Devices: a node can be made but not opened, unless privileged.
    let out = sh(
        &tb,
        &[],
        "mknod /tmp/mem c 1 1 && head -c 1 /tmp/mem >/dev/null 2>&1; echo rc=$?",
    );
    assert!(out.trim().ends_with("rc=1"), "{out}");
    let out = sh(
        &tb,
        &["--privileged"],
        "ls /dev | wc -l; cat /proc/kcore | head -c 1 | wc -c",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].trim().parse::<u32>().unwrap() > 15,
        "host devices under --privileged: {out}"
    );
    // A read-only root: writes fail, tmpfs and volumes still take them.
    let out = sh(
        &tb,
        &["--read-only", "--tmpfs", "/run", "-v", "data:/data"],
        "touch /x 2>&1; echo root=$?; touch /run/ok /data/ok && echo mounts=ok",
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("root=1") && out.contains("mounts=ok"), "{out}");
    let out = sh(
        &tb,
        &["--read-only", "--tmpfs", "/tmp"],
        "touch /tmp/x && echo ok",
    );
    assert_eq!(out.trim(), "ok");
    // Bad values are one line each.
    tb.fails(
        &["run", "--rm", "--cap-add", "CAP_BOGUS", "busybox", "true"],
        125,
        "unknown capability",
    );
    tb.fails(
        &[
            "run",
            "--rm",
            "--security-opt",
            "apparmor=docker-default",
            "busybox",
            "true",
        ],
        125,
        "AppArmor",
    );
    tb.fails(
        &[
            "run",
            "--rm",
            "--security-opt",
            "nonsense",
            "busybox",
            "true",
        ],
        125,
        "invalid --security-opt",
    );
    tb.ok(&["volume", "rm", "data"]);
    tb.assert_clean(&[]);
}

/// Peak memory (KiB) of running `cmd` to its end, and what it printed.
fn peak_rss_kib(mut cmd: Command, scratch: &Path) -> (u64, i32, String, String) {
    let (o, e) = (scratch.join("rss.out"), scratch.join("rss.err"));
    let mut child = cmd
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap();
    // SAFETY: rusage is plain old data; wait4 fills it and reaps our own child (whose
    // Child handle is then never waited on).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    // SAFETY: as above.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    // Already reaped: this only lets the handle go.
    let _ = child.try_wait();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (
        ru.ru_maxrss as u64,
        code,
        std::fs::read_to_string(&o).unwrap(),
        std::fs::read_to_string(&e).unwrap(),
    )
}

#[test]
fn a_log_flood_is_capped_and_tail_reads_from_the_end() {
    let tb = Tb::new();
    // 64 MB of 2-byte lines against a 1m x 3 log.
    tb.ok(&[
        "run",
        "--name",
        "flood",
        "--network",
        "none",
        "--log-opt",
        "max-size=1m",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "yes | head -c 64000000; echo last line; sleep 1; echo to stderr >&2",
    ]);
    let id = inspect(&tb, "flood")["Id"].as_str().unwrap().to_string();
    let dir = tb.root().join("containers").join(&id);
    let logs: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("container.log"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    let total: u64 = logs.iter().map(|(_, n)| n).sum();
    println!("log files after a 64 MB flood with max-size=1m max-file=3: {logs:?}");
    assert_eq!(logs.len(), 3, "{logs:?}");
    assert!(total <= 3 << 20, "{logs:?}");
    let scratch = tb.dir.path();
    let (kib, code, out, err) = peak_rss_kib(tb.cmd(&["logs", "--tail", "1", "flood"]), scratch);
    println!("logs --tail 1: peak RSS {kib} KiB");
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", "to stderr\n"));
    let (kib2, code, out, _) = peak_rss_kib(tb.cmd(&["logs", "--tail", "2", "flood"]), scratch);
    assert_eq!((code, out.as_str()), (0, "last line\n"));
    assert!(
        kib > 0 && kib < 64 * 1024 && kib2 < 64 * 1024,
        "{kib} / {kib2} KiB"
    );
    // A whole read streams too.
    let (kib3, code, _, _) = peak_rss_kib(tb.cmd(&["logs", "flood"]), scratch);
    println!("logs (all, ~3 MB): peak RSS {kib3} KiB");
    assert!(code == 0 && kib3 < 64 * 1024, "{kib3} KiB");
    // Bad options and the none driver.
    tb.fails(
        &[
            "run",
            "--rm",
            "--log-opt",
            "max-size=tiny",
            "busybox",
            "true",
        ],
        125,
        "max-size",
    );
    tb.fails(
        &["run", "--rm", "--log-driver", "syslog", "busybox", "true"],
        125,
        "logging driver",
    );
    tb.ok(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "busybox",
        "echo",
        "hi",
    ]);
    tb.fails(&["logs", "quiet"], 125, "log-driver none");
    tb.ok(&["rm", "flood", "quiet"]);
    tb.assert_clean(&[]);
}

#[test]
fn a_damaged_record_affects_only_its_container() {
    let tb = Tb::new();
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "good",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "bad",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    let bad = inspect(&tb, "bad");
    let (bad_id, bad_pid) = (
        bad["Id"].as_str().unwrap().to_string(),
        bad["State"]["Pid"].as_i64().unwrap() as i32,
    );
    let record = tb
        .root()
        .join("containers")
        .join(&bad_id)
        .join("config.json");
    let text = std::fs::read(&record).unwrap();
    std::fs::write(&record, &text[..text.len() / 2]).unwrap();
    std::fs::write(tb.root().join("containers/stray-file"), b"x").unwrap();
    // Everything else goes on.
    let ps = tb.ok(&["ps", "-a"]);
    assert!(ps.contains("good") && ps.contains(&bad_id[..12]), "{ps}");
    assert!(ps.contains("Dead (record unreadable"), "{ps}");
    assert_eq!(tb.ok(&["exec", "good", "echo", "fine"]), "fine\n");
    tb.ok(&["run", "--rm", "--network", "none", "busybox", "true"]);
    tb.ok(&["stop", "-t", "1", "good"]);
    tb.ok(&["start", "good"]);
    // rm without -f says what to do; rm -f stops what is left and removes it.
    tb.fails(&["rm", &bad_id[..12]], 1, "rm -f");
    tb.ok(&["rm", "-f", &bad_id[..12]]);
    assert!(
        eventually(5, || !Path::new(&format!("/proc/{bad_pid}")).exists()),
        "the damaged container's workload still runs"
    );
    assert!(!tb.ok(&["ps", "-a"]).contains(&bad_id[..12]));
    std::fs::remove_file(tb.root().join("containers/stray-file")).unwrap();
    tb.ok(&["rm", "-f", "good"]);
    tb.assert_clean(&[]);
}

#[test]
fn a_damaged_image_index_or_image_is_repaired() {
    let tb = Tb::new();
    let layer = tb.dir.path().join("f");
    std::fs::write(&layer, b"x").unwrap();
    let tar = tb.dir.path().join("one.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(tb.dir.path())
        .arg("-cf")
        .arg(&tar)
        .arg("f")
        .status()
        .unwrap()
        .success());
    tb.ok(&["import", tar.to_str().unwrap(), "one:1"]);
    tb.ok(&["run", "--rm", "--network", "none", "busybox", "true"]);
    let one_id = tb.image_field("one:1", "Id");
    let busybox_id = tb.image_field("busybox", "Id");
    let idx = tb.root().join("images/index.json");
    // The copy kept with the index stands in for it.
    std::fs::write(&idx, b"{ garbage").unwrap();
    assert!(tb.ok(&["images"]).contains("one"));
    // Both gone: a clear error, and image prune rebuilds from the blobs.
    std::fs::write(&idx, b"{ garbage").unwrap();
    std::fs::write(tb.root().join("images/index.json.copy"), b"{ garbage").unwrap();
    tb.fails(&["images"], 125, "image prune");
    tb.ok(&["image", "prune"]);
    let ids = tb.ok(&["images", "-q", "--no-trunc"]);
    assert_eq!(ids.lines().count(), 2, "{ids}");
    assert!(ids.contains(&one_id) && ids.contains(&busybox_id), "{ids}");
    tb.ok(&["tag", &one_id, "one:1"]);
    tb.ok(&["tag", &busybox_id, "busybox:latest"]);
    // One image's config blob lost: the other images stay usable; rmi removes it.
    let config = one_id.trim_start_matches("sha256:");
    std::fs::remove_file(tb.root().join("images/blobs/sha256").join(config)).unwrap();
    let o = tb.out(&["images"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("busybox") && !stdout(&o).contains("one "));
    assert!(String::from_utf8_lossy(&o.stderr).contains("image one:1 is damaged"));
    tb.fails(&["run", "--rm", "one:1", "true"], 125, "damaged");
    tb.ok(&["rmi", "one:1"]);
    assert!(!String::from_utf8_lossy(&tb.out(&["images"]).stderr).contains("damaged"));
    tb.ok(&["run", "--rm", "--network", "none", "busybox", "true"]);
    tb.assert_clean(&[]);
}

#[test]
fn layers_unpack_under_their_own_lock_and_deep_trees_are_refused() {
    let tb = Tb::new();
    // A tree deeper than the limit: refused with one line, nothing left.
    let mut b = tar::Builder::new(Vec::new());
    let deep = "d/".repeat(twinbox::image::unpack::MAX_DEPTH + 40);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, &deep, std::io::empty()).unwrap();
    let tar_path = tb.dir.path().join("deep.tar");
    std::fs::write(&tar_path, b.into_inner().unwrap()).unwrap();
    tb.ok(&["import", tar_path.to_str().unwrap(), "deep:1"]);
    tb.fails(
        &["create", "--network", "none", "deep:1", "sh"],
        125,
        "directories deep",
    );
    // While one layer's unpack holds its lock, the store stays usable.
    let small = tb.dir.path().join("small.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(tb.dir.path())
        .arg("-cf")
        .arg(&small)
        .arg("deep.tar")
        .status()
        .unwrap()
        .success());
    tb.ok(&["import", small.to_str().unwrap(), "small:1"]);
    let diff = serde_json::from_str::<serde_json::Value>(&tb.ok(&["image", "inspect", "small:1"]))
        .unwrap()[0]["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let lock = tb.root().join("images/locks").join(format!("{diff}.lock"));
    let held = twinbox::util::fs::Lock::exclusive(&lock).unwrap();
    let mut waiting = tb
        .cmd(&[
            "create",
            "--name",
            "waits",
            "--network",
            "none",
            "small:1",
            "sh",
        ])
        .spawn()
        .unwrap();
    // Meanwhile: other images come and go.
    tb.ok(&["import", small.to_str().unwrap(), "small:2"]);
    tb.ok(&["tag", "small:2", "small:3"]);
    tb.ok(&["rmi", "small:3"]);
    tb.ok(&["images"]);
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "create did not wait for the layer"
    );
    drop(held);
    assert!(waiting.wait().unwrap().success());
    tb.ok(&["rm", "waits"]);
    // A killed unpack's directory goes at the next command.
    let stale = tb.root().join("images/tmp").join("unpack-abc-99999999");
    std::fs::create_dir_all(stale.join("x")).unwrap();
    tb.ok(&["images"]);
    assert!(!stale.exists());
    tb.assert_clean(&[]);
}

#[test]
fn a_killed_run_leaves_nothing_half_made() {
    let tb = Tb::new();
    tb.ok(&["run", "--rm", "--network", "none", "busybox", "true"]);
    let mut killed = 0;
    for i in 0..40u64 {
        let mut c = tb
            .cmd(&[
                "run",
                "--rm",
                "--network",
                "none",
                "busybox",
                "sleep",
                "0.2",
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(250 * (i % 20)));
        if c.try_wait().unwrap().is_none() {
            let _ = c.kill();
            killed += 1;
        }
        let _ = c.wait();
    }
    println!("killed {killed} of 40 runs at 0-5 ms");
    // Whatever each killed run had made is gone once anything looks (and the ones
    // that got to start remove themselves: --rm).
    assert!(
        eventually(10, || {
            tb.ok(&["ps", "-a", "-q"]).is_empty()
                && std::fs::read_dir(tb.root().join("containers"))
                    .unwrap()
                    .count()
                    == 0
        }),
        "left: {}",
        tb.ok(&["ps", "-a"])
    );
    tb.assert_clean(&[]);
}

#[test]
fn bad_input_is_refused_with_one_line_and_leaves_nothing() {
    let tb = Tb::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--rm", "-h", "a/b", "busybox", "true"],
            "invalid hostname",
        ),
        (
            &["run", "--rm", "-h", "", "busybox", "true"],
            "invalid hostname",
        ),
        (
            &["run", "--rm", "-v", "/tmp:/proc", "busybox", "true"],
            "/proc",
        ),
        (
            &["run", "--rm", "-v", "/tmp:/sys/fs", "busybox", "true"],
            "/proc",
        ),
        (
            &["run", "--rm", "--tmpfs", "/dev", "busybox", "true"],
            "/proc",
        ),
        (
            &["run", "--rm", "-e", "=value", "busybox", "true"],
            "environment variable",
        ),
        (
            &["run", "--rm", "-e", "", "busybox", "true"],
            "environment variable",
        ),
        (
            &[
                "run",
                "--rm",
                "--isolation",
                "vm",
                "-m",
                "99999999g",
                "busybox",
                "true",
            ],
            "memory",
        ),
        (
            &["run", "--rm", "-m", "99999999999g", "busybox", "true"],
            "memory",
        ),
        (
            &["run", "--rm", "-m", "99999999g", "busybox", "true"],
            "memory and swap",
        ),
        (
            &["run", "--rm", "--cpus", "1e9", "busybox", "true"],
            "--cpus",
        ),
        (
            &["run", "--rm", "--cpus", "0.001", "busybox", "true"],
            "--cpus",
        ),
        (&["tag", "busybox", "../../evil"], "invalid image reference"),
        (&["tag", "busybox", "UPPER"], "invalid image reference"),
    ];
    tb.ok(&["run", "--rm", "--network", "none", "busybox", "true"]);
    for (args, needle) in cases {
        tb.fails(args, 125, needle);
    }
    let long = "a".repeat(5000);
    tb.fails(&["tag", "busybox", &long], 125, "longer than 255");
    // exec -w must be absolute, as run -w.
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "cc",
        "--network",
        "none",
        "busybox",
        "sleep",
        "1000",
    ]);
    tb.fails(&["exec", "-w", "rel", "cc", "pwd"], 125, "absolute path");
    tb.fails(
        &["exec", "-e", "=x", "cc", "true"],
        125,
        "environment variable",
    );
    assert_eq!(tb.out(&["exec", "cc", "ls", "/rel"]).status.code(), Some(1));
    // A sparse file copies out as one (its holes stay holes on the host).
    tb.ok(&[
        "exec",
        "cc",
        "sh",
        "-c",
        "dd if=/dev/zero of=/tmp/sparse bs=1 count=1 seek=268435455 2>/dev/null",
    ]);
    let sparse = tb.dir.path().join("sparse");
    tb.ok(&["cp", "cc:/tmp/sparse", sparse.to_str().unwrap()]);
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&sparse).unwrap();
    assert_eq!(m.len(), 256 << 20);
    assert!(m.blocks() * 512 < 4 << 20, "{} blocks", m.blocks());
    // A FIFO copies as a FIFO, both ways.
    tb.ok(&["exec", "cc", "mkfifo", "/tmp/pipe"]);
    let out = tb.dir.path().join("pipe-out");
    tb.ok(&["cp", "cc:/tmp/pipe", out.to_str().unwrap()]);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&out)
        .unwrap()
        .file_type()
        .is_fifo());
    tb.ok(&["cp", out.to_str().unwrap(), "cc:/tmp/pipe2"]);
    assert_eq!(
        tb.ok(&["exec", "cc", "sh", "-c", "test -p /tmp/pipe2 && echo fifo"]),
        "fifo\n"
    );
    tb.ok(&["rm", "-f", "cc"]);
    // load: archives naming images badly tag nothing and leave no blob.
    let blobs = tb.blob_count();
    for name in ["../../evil:latest", &format!("{long}:1")] {
        let archive = tb.dir.path().join("bad.tar");
        let o = tb.out(&["save", "-o", archive.to_str().unwrap(), "busybox"]);
        assert!(o.status.success());
        rename_in_archive(&archive, name);
        tb.ok(&["rmi", "busybox"]);
        let before = tb.blob_count();
        tb.fails(
            &["load", "-i", archive.to_str().unwrap()],
            125,
            "invalid image reference",
        );
        assert_eq!(tb.blob_count(), before);
        assert!(tb.ok(&["images", "-q"]).is_empty());
        tb.ok(&["run", "--rm", "--network", "none", "busybox", "true"]);
    }
    let _ = blobs;
    tb.assert_clean(&[]);
}

/// Rewrite a docker-archive's manifest.json so its one image is tagged `name`.
fn rename_in_archive(archive: &Path, name: &str) {
    let mut ar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    let mut out = tar::Builder::new(Vec::new());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let mut h = e.header().clone();
        let path = e.path().unwrap().into_owned();
        if path == Path::new("manifest.json") {
            let mut v: serde_json::Value = serde_json::from_slice(&data).unwrap();
            v[0]["RepoTags"] = serde_json::json!([name]);
            data = serde_json::to_vec(&v).unwrap();
            h.set_size(data.len() as u64);
            h.set_cksum();
        }
        out.append_data(&mut h, &path, &data[..]).unwrap();
    }
    std::fs::write(archive, out.into_inner().unwrap()).unwrap();
}

#[test]
fn a_remapped_root_is_nobody_on_the_host() {
    let tb = Tb::new();
    let map = twinbox::security::subid::lookup("default").unwrap_or_else(|e| {
        panic!("{e}: scripts/setup.sh adds the twinbox user and its subordinate ids")
    });
    let secret = tb.dir.path().join("secret");
    std::fs::write(&secret, b"host only").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let probe = tool(&tb, "probe");
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "rr",
        "--userns",
        "remap",
        "-v",
        "rvol:/data",
        "-v",
        &format!("{}:/hs:ro", secret.display()),
        "busybox",
        "sh",
        "-c",
        "httpd -p 80 -h /etc; sleep 1000",
    ]);
    let pid = inspect(&tb, "rr")["State"]["Pid"].as_i64().unwrap();
    let host_uid = status_field(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap(),
        "Uid",
    );
    assert_eq!(
        host_uid.split_whitespace().next().unwrap(),
        map.uid.to_string()
    );
    let inside = tb.ok(&[
        "exec", "rr", "sh", "-c",
        "id -u; cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //'; ls -ln /etc/passwd | tr -s ' ' | cut -d' ' -f3,4; \
         cat /hs 2>&1; touch /data/x && echo volume-ok; wget -qO- http://127.0.0.1/hostname >/dev/null && echo port-80-ok",
    ]);
    println!("--userns remap: host uid {host_uid}; inside:\n{inside}");
    let lines: Vec<&str> = inside.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1], format!("0 {} {}", map.uid, map.size));
    assert_eq!(lines[2], "0 0", "the image's files show their owners");
    assert!(lines[3].contains("Permission denied"), "{inside}");
    assert!(
        inside.contains("volume-ok") && inside.contains("port-80-ok"),
        "{inside}"
    );
    // A setuid binary the container's root makes is owned by its host id, not root.
    tb.ok(&["cp", probe.to_str().unwrap(), "rr:/bin/suid"]);
    tb.ok(&["exec", "rr", "chmod", "4755", "/bin/suid"]);
    let id = inspect(&tb, "rr")["Id"].as_str().unwrap().to_string();
    let f = tb
        .root()
        .join("containers")
        .join(&id)
        .join("upper/bin/suid");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&f).unwrap().uid(), map.uid);
    assert_eq!(
        tb.ok(&["exec", "rr", "/bin/suid"]).trim(),
        "euid=0 shadow=denied"
    );
    tb.ok(&["rm", "-f", "rr"]);
    // A remapped container's volume keeps the ids other containers would see: the
    // image's files copied up show their owners; a plain process container may not
    // mount it any more (its root's files are stored as host root's).
    let up = tb.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--userns",
        "remap",
        "-v",
        "cvol:/bin",
        "busybox",
        "sh",
        "-c",
        "ls -ln /bin/busybox | tr -s ' ' | cut -d' ' -f3,4",
    ]);
    assert_eq!(up.trim(), "0 0");
    let on_disk = tb.root().join("volumes/cvol/_data/busybox");
    assert_eq!(std::fs::metadata(&on_disk).unwrap().uid(), 0);
    tb.fails(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "cvol:/x",
            "busybox",
            "true",
        ],
        125,
        "--userns remap",
    );
    tb.ok(&["volume", "rm", "cvol"]);
    // What a remapped root made is committed with the container's ids.
    tb.ok(&[
        "run",
        "--name",
        "cm",
        "--network",
        "none",
        "--userns",
        "remap",
        "busybox",
        "touch",
        "/made",
    ]);
    tb.ok(&["commit", "cm", "made:1"]);
    assert_eq!(
        tb.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "made:1",
            "stat",
            "-c",
            "%u:%g",
            "/made"
        ])
        .trim(),
        "0:0"
    );
    tb.ok(&["rm", "cm"]);
    tb.ok(&["volume", "rm", "rvol"]);
    // Docker's userns-remap setting makes it the default; --userns host opts out.
    std::fs::write(
        tb.dir.path().join("daemon.json"),
        r#"{"userns-remap": "default"}"#,
    )
    .unwrap();
    let uid_map = |extra: &[&str]| {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["busybox", "cat", "/proc/self/uid_map"]);
        tb.ok(&a).split_whitespace().nth(1).unwrap().to_string()
    };
    assert_eq!(uid_map(&[]), map.uid.to_string());
    assert_eq!(uid_map(&["--userns", "host"]), "0");
    tb.fails(
        &["run", "--rm", "--privileged", "busybox", "true"],
        125,
        "--userns host",
    );
    std::fs::remove_file(tb.dir.path().join("daemon.json")).unwrap();
    tb.fails(
        &[
            "run",
            "--rm",
            "--userns",
            "remap",
            "--isolation",
            "vm",
            "busybox",
            "true",
        ],
        125,
        "process containers",
    );
    tb.fails(
        &["run", "--rm", "--userns", "sideways", "busybox", "true"],
        125,
        "use host or remap",
    );
    tb.assert_clean(&[]);
}

#[test]
fn symlinks_in_an_image_or_a_writable_layer_stay_inside_the_root() {
    let tb = Tb::new();
    // Host paths that do not exist: following a symlink out of the root would make them.
    let victim = Path::new("/run").join(unique("victim"));
    let etc_victim = Path::new("/run").join(unique("etc-victim"));
    // A container swaps its /tmp (a mount point at every start) for a symlink to a
    // host path, and stops; its next start makes the mount point inside its root.
    tb.ok(&[
        "run",
        "--name",
        "sw",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        &format!("rm -rf /tmp && ln -s {}/deep /tmp", victim.display()),
    ]);
    tb.ok(&["start", "-a", "sw"]);
    // An image whose /etc is a symlink to a host directory: the container's /etc files
    // are made and mounted inside its root, not in that directory.
    std::fs::create_dir(&etc_victim).unwrap();
    let layer = tb.dir.path().join("layer");
    std::fs::create_dir_all(layer.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", layer.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink(&etc_victim, layer.join("etc")).unwrap();
    let tar = tb.dir.path().join("layer.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&layer)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    tb.ok(&["import", tar.to_str().unwrap(), "etclink:1"]);
    let o = tb.out(&[
        "run",
        "--rm",
        "--network",
        "none",
        "etclink:1",
        "/bin/busybox",
        "cat",
        "/etc/hostname",
    ]);
    let made = victim.exists() as usize + std::fs::read_dir(&etc_victim).unwrap().count();
    println!(
        "image /etc -> {} and a layer's /tmp -> {}: run gave {:?}; host paths made: {made}",
        etc_victim.display(),
        victim.display(),
        o.status.code()
    );
    let _ = std::fs::remove_dir_all(&victim);
    let _ = std::fs::remove_dir_all(&etc_victim);
    assert_eq!(made, 0, "a path was made on the host");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tb.ok(&["rm", "-f", "sw"]);
    tb.assert_clean(&[]);
}
