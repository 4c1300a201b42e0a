//! Helpers for end-to-end tests that run the real `twinbox` binary.
//!
//! Each test gets its own state and runtime directories, so tests run in parallel
//! without seeing each other, and its own network namespace: every bridge, rule,
//! published port and packet a test makes stays inside it, and goes with it. These tests need root (namespaces, cgroups, mounts):
//! run as root, as CI does. Without root they fail with a message saying so.

#![allow(dead_code)]

pub mod foreign;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Tb {
    pub dir: tempfile::TempDir,
    /// The test's network namespace (`ip netns` name), where every command runs.
    pub netns: String,
    netns_fd: std::fs::File,
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (namespaces, cgroups, mounts): run the suite as root, as CI does"
    );
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_twinbox")
}

impl Tb {
    pub fn new() -> Tb {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("tbtest")
            .tempdir_in("/tmp")
            .unwrap();
        let netns = format!(
            "tbt-{}",
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("tbtest")
        );
        let st = Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .expect("ip (iproute2) is needed to give each test its own network namespace");
        assert!(st.success(), "ip netns add {netns} failed");
        let st = Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(st.success(), "lo up in {netns}");
        let netns_fd = std::fs::File::open(format!("/run/netns/{netns}")).unwrap();
        Tb {
            dir,
            netns,
            netns_fd,
        }
    }

    /// /run/netns/<name>, for `nsenter --net=`.
    pub fn netns_path(&self) -> String {
        format!("/run/netns/{}", self.netns)
    }

    /// Run a host command inside the test's network namespace.
    pub fn host(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    /// Assert that no device or rule of twinbox is left in the test's namespace (monitors
    /// remove their devices just after they report an exit: allow them a moment).
    pub fn assert_net_clean(&self) {
        let mut left = Vec::new();
        eventually(5, || {
            left = self.net_leftovers();
            left.is_empty()
        });
        assert!(left.is_empty(), "twinbox network leftovers: {left:?}");
    }

    /// twinbox's devices and rules left in the test's namespace (should be none after
    /// every container and network is removed).
    pub fn net_leftovers(&self) -> Vec<String> {
        let links = String::from_utf8_lossy(&self.host(&["ip", "-o", "link"]).stdout).into_owned();
        let mut left: Vec<String> = links
            .lines()
            .filter_map(|l| {
                l.split(':')
                    .nth(1)
                    .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            })
            .filter(|n| n.starts_with("twinbox") || n.starts_with("tb"))
            .collect();
        let rules =
            String::from_utf8_lossy(&self.host(&["nft", "list", "ruleset"]).stdout).into_owned();
        if rules.contains("twinbox") {
            left.push(format!("nftables: {rules}"));
        }
        left
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn run_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(bin());
        c.env("TWINBOX_ROOT", self.root())
            .env("TWINBOX_RUN_ROOT", self.run_root())
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            // twinbox's settings file: the test's own, never the host's
            .env("TWINBOX_CONFIG", self.dir.path().join("daemon.json"))
            .env_remove("TWINBOX_ISOLATION")
            .args(args)
            .stdin(Stdio::null());
        let fd = self.netns_fd.as_raw_fd();
        // SAFETY: between fork and exec only setns(2), which is async-signal-safe, on a
        // descriptor the parent keeps open.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    }

    /// Run and capture.
    pub fn out(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn twinbox")
    }

    /// Run, expect success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.out(args);
        assert!(
            o.status.success(),
            "twinbox {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Run with stdin data.
    pub fn with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Expect failure with exactly one line on stderr mentioning `needle`.
    pub fn fails(&self, args: &[&str], code: i32, needle: &str) {
        let o = self.out(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(code),
            "twinbox {args:?}: expected exit {code}, got {:?}; stderr: {err}",
            o.status.code()
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "twinbox {args:?}: expected one error line, got: {err}"
        );
        assert!(
            err.contains(needle),
            "twinbox {args:?}: stderr {err:?} does not mention {needle:?}"
        );
    }

    /// A string field of `image inspect IMAGE` (Id, Manifest, …).
    pub fn image_field(&self, image: &str, key: &str) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["image", "inspect", image])).unwrap();
        v[0][key]
            .as_str()
            .unwrap_or_else(|| panic!("image inspect {image}: no string {key}"))
            .to_string()
    }

    /// How many blobs the image store holds.
    pub fn blob_count(&self) -> usize {
        std::fs::read_dir(self.root().join("images/blobs/sha256"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Full ids of every container (any state).
    pub fn all_ids(&self) -> Vec<String> {
        self.ok(&["ps", "-a", "-q", "--no-trunc"])
            .lines()
            .map(String::from)
            .collect()
    }

    /// Assert nothing of container `ids` is left: records, runtime dirs, cgroups,
    /// mounts, processes, temp files in the image store. Use after removals and failed commands.
    pub fn assert_clean(&self, ids: &[String]) {
        let containers = self.root().join("containers");
        let left: Vec<_> = std::fs::read_dir(&containers)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "container records left behind: {left:?}");
        let run_left: Vec<_> = std::fs::read_dir(self.run_root())
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            run_left.is_empty(),
            "runtime files left behind: {run_left:?}"
        );
        for id in ids {
            for d in cgroup_dirs(id) {
                assert!(!d.exists(), "cgroup left behind: {}", d.display());
            }
        }
        let tmp_left: Vec<_> = std::fs::read_dir(self.root().join("images/tmp"))
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            tmp_left.is_empty(),
            "temp blobs or unpack dirs left in the image store: {tmp_left:?}"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.dir.path().display().to_string();
        assert!(!mounts.contains(&root), "mounts left behind under {root}");
        // A monitor removes its container's network devices after reporting the exit
        // (unregistering a device takes tens of ms), then ends: give it a moment.
        let mut procs = Vec::new();
        let mut devs = Vec::new();
        eventually(5, || {
            procs = processes_of(&root);
            devs = self
                .net_leftovers()
                .into_iter()
                .filter(|d| d.starts_with("tbv") || d.starts_with("tbt"))
                .collect();
            procs.is_empty() && devs.is_empty()
        });
        assert!(procs.is_empty(), "processes left behind: {procs:?}");
        assert!(
            devs.is_empty(),
            "container network devices left behind: {devs:?}"
        );
    }
}

impl Drop for Tb {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// Every cgroup directory twinbox could have made for `id`.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            v.push(e.path().join("twinbox").join(id));
        }
    }
    v.push(Path::new("/sys/fs/cgroup/twinbox").join(id));
    v
}

/// Pids (other than ours) for which `matches` holds on `/proc/<pid>/<file>` for any
/// of `files`.
fn processes_whose(files: &[&str], matches: impl Fn(&[u8]) -> bool) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid != me
            && files
                .iter()
                .any(|f| std::fs::read(format!("/proc/{pid}/{f}")).is_ok_and(|b| matches(&b)))
        {
            v.push(pid);
        }
    }
    v
}

/// Pids that belong to the twinbox whose state root is `root`: monitors are forked
/// (not exec'd) from a CLI the test ran with `TWINBOX_ROOT` in its environment, and
/// keep it; VMMs and virtiofsds inherit it; helpers name it in their argv.
pub fn processes_of(root: &str) -> Vec<i32> {
    processes_whose(&["cmdline", "environ"], |b| {
        b.split(|c| *c == 0)
            .any(|part| String::from_utf8_lossy(part).contains(root))
    })
}

/// Pids whose command line, its arguments joined by spaces, mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    processes_whose(&["cmdline"], |b| {
        let joined: Vec<u8> = b.iter().map(|c| if *c == 0 { b' ' } else { *c }).collect();
        String::from_utf8_lossy(&joined).contains(needle)
    })
}

/// Poll until `f` holds (up to `secs`).
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Build one of tests/escape_tools/*.c as a static binary in `dir` (gcc and libc6-dev,
/// which scripts/setup.sh installs).
pub fn escape_tool(dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/escape_tools")
        .join(format!("{name}.c"));
    let out = dir.join(name);
    let o = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .expect("cc (gcc) is needed to build the escape tools: apt-get install gcc libc6-dev");
    assert!(
        o.status.success(),
        "cc {}: {}",
        src.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}
