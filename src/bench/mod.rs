//! `twinbox bench`: start-up and overhead benchmarks, with peers where installed.
//!
//! Every figure is a set of raw samples (medians and spread are computed from them),
//! written as JSON with a description of the machine, plus an SVG chart per suite.
//! Suites that need a microVM run natively on a host with VT-x/AMD-V and in the lab
//! elsewhere; those samples are marked `lab` (emulated: compare them with each other,
//! not with native ones).

pub mod svg;

use crate::engine::Stat;
use crate::paths::Paths;
use crate::util::cpio::CpioWriter;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub mod net;

pub const SUITES: &[&str] = &["startup", "density", "cpu", "io", "net", "rtt"];

/// One runtime's (or configuration's) samples in a suite.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Series {
    pub name: String,
    /// "native" or "lab".
    pub location: String,
    pub samples: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<Stat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Suite {
    pub suite: String,
    /// What a sample measures.
    pub unit: String,
    pub series: Vec<Series>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Machine {
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kvm: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Report {
    pub machine: Machine,
    pub runs: usize,
    pub suites: Vec<Suite>,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        cpus: cpuinfo.matches("processor\t:").count(),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name\t: "))
            .unwrap_or("")
            .to_string(),
        memory: meminfo
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" "),
        kvm: if crate::vmm::is_pvm_host() {
            "PVM-based (vm figures come from the lab)".into()
        } else if Path::new("/dev/kvm").exists() {
            "hardware".into()
        } else {
            "none".into()
        },
    }
}

fn series(name: &str, location: &str, samples: Vec<f64>) -> Series {
    Series {
        name: name.into(),
        location: location.into(),
        stat: Some(Stat::of(&samples)),
        samples,
        skipped: None,
    }
}

/// A series from a measurement, or its reason for being skipped.
fn measured(name: &str, location: &str, r: Result<Vec<f64>, String>) -> Series {
    match r {
        Ok(v) => series(name, location, v),
        Err(e) => skipped(name, &e),
    }
}

fn skipped(name: &str, why: &str) -> Series {
    Series {
        name: name.into(),
        skipped: Some(why.into()),
        ..Default::default()
    }
}

pub use crate::util::fs::which;

/// Run a command `runs` times (after a warm-up), wall time per run in ms.
fn time_runs(runs: usize, mut make: impl FnMut(usize) -> Command) -> Result<Vec<f64>, String> {
    let mut v = Vec::new();
    for i in 0..=runs {
        let mut c = make(i);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let t = Instant::now();
        let o = c.output().map_err(|e| e.to_string())?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
        }
        if i > 0 {
            v.push(ms);
        }
    }
    Ok(v)
}

fn twinbox(paths: &Paths) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap_or_else(|_| "twinbox".into()));
    c.arg("--root")
        .arg(&paths.root)
        .arg("--run-root")
        .arg(&paths.run);
    c
}

/// An OCI bundle of the busybox image for crun/runc.
fn oci_bundle(engine: &crate::engine::Engine, dir: &Path) -> Result<PathBuf, String> {
    let img = engine
        .images
        .find_or_builtin("busybox")
        .map_err(|e| e.to_string())?;
    let layers = engine.images.layer_dirs(&img).map_err(|e| e.to_string())?;
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(|e| e.to_string())?;
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", layers[0].display()))
        .arg(&rootfs)
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err("cp of the busybox layer failed".into());
    }
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["true"],
            "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true},
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}
    });
    std::fs::write(dir.join("config.json"), config.to_string()).map_err(|e| e.to_string())?;
    Ok(dir.to_path_buf())
}

/// crun refuses a cgroup v2 hierarchy that holds controllers beside v1 ones (these
/// machines: hugetlb); moving hugetlb to its own v1 hierarchy fixes that (docs/lab.md §6).
fn crun_cgroup_fix() {
    let unified = Path::new("/sys/fs/cgroup/unified/cgroup.controllers");
    if std::fs::read_to_string(unified)
        .map(|s| s.contains("hugetlb"))
        .unwrap_or(false)
    {
        let _ = std::fs::create_dir_all("/sys/fs/cgroup/hugetlb");
        let _ = Command::new("mount")
            .args([
                "-t",
                "cgroup",
                "-o",
                "hugetlb",
                "cgroup",
                "/sys/fs/cgroup/hugetlb",
            ])
            .status();
        eprintln!("bench: moved hugetlb to a v1 hierarchy so crun accepts this host's cgroups (docs/lab.md §6)");
    }
}

/// A tiny initramfs whose /init reboots at once: kernel-to-userspace for any VMM.
pub fn mini_initrd(path: &Path) -> Result<(), String> {
    busybox_initrd(path, "#!/bin/busybox sh\n/bin/busybox reboot -f\n")
}

/// An initramfs of busybox and `init` (a script run by it).
fn busybox_initrd(path: &Path, init: &str) -> Result<(), String> {
    let busybox = std::fs::read("/bin/busybox").map_err(|e| format!("/bin/busybox: {e}"))?;
    let f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut w = CpioWriter::new(std::io::BufWriter::new(f));
    (|| -> std::io::Result<()> {
        for d in ["bin", "proc", "dev"] {
            w.dir(d, 0o755)?;
        }
        w.file("bin/busybox", 0o755, &busybox)?;
        w.file("init", 0o755, init.as_bytes())?;
        w.finish().map(|_| ())
    })()
    .map_err(|e| e.to_string())
}

/// Start-up, native part: bare exec, twinbox process, crun, runc.
pub fn startup_native(engine: &crate::engine::Engine, runs: usize) -> Vec<Series> {
    let mut out = Vec::new();
    match time_runs(runs, |_| {
        let mut c = Command::new("/bin/busybox");
        c.arg("true");
        c
    }) {
        Ok(v) => out.push(series("bare exec (busybox true)", "native", v)),
        Err(e) => out.push(skipped("bare exec (busybox true)", &e)),
    }
    // Like crun and runc below: a network namespace with only lo. Then with the
    // default bridge (a veth pair, an address, a route), what `run` does by default.
    for (name, net) in [
        ("twinbox --isolation process", "none"),
        ("twinbox --isolation process (bridge network)", "bridge"),
    ] {
        match time_runs(runs, |_| {
            let mut c = twinbox(&engine.paths);
            c.args(["run", "--rm", "--network", net, "busybox", "true"]);
            c
        }) {
            Ok(v) => out.push(series(name, "native", v)),
            Err(e) => out.push(skipped(name, &e)),
        }
    }
    let bundle_dir =
        std::env::temp_dir().join(format!("twinbox-bench-bundle-{}", std::process::id()));
    let bundle = oci_bundle(engine, &bundle_dir);
    for rt in ["crun", "runc"] {
        let Some(bin) = which(rt) else {
            out.push(skipped(
                rt,
                &format!("{rt} is not installed (apt-get install {rt})"),
            ));
            continue;
        };
        let Ok(b) = &bundle else {
            out.push(skipped(
                rt,
                &format!(
                    "no OCI bundle: {}",
                    bundle.as_ref().err().cloned().unwrap_or_default()
                ),
            ));
            continue;
        };
        if rt == "crun" {
            crun_cgroup_fix();
        }
        let pid = std::process::id();
        match time_runs(runs, |i| {
            let mut c = Command::new(&bin);
            c.arg("run")
                .arg("--bundle")
                .arg(b)
                .arg(format!("tb-bench-{pid}-{i}"));
            c
        }) {
            Ok(v) => out.push(series(rt, "native", v)),
            Err(e) => out.push(skipped(rt, &format!("{rt} failed: {e}"))),
        }
    }
    let _ = std::fs::remove_dir_all(&bundle_dir);
    out
}

/// Start-up, vm part (where KVM runs a standard guest: natively or in the lab).
pub fn startup_vm(engine: &crate::engine::Engine, runs: usize, location: &str) -> Vec<Series> {
    let mut out = Vec::new();
    match time_runs(runs, |_| {
        let mut c = twinbox(&engine.paths);
        c.args([
            "run",
            "--rm",
            "--network",
            "none",
            "--isolation",
            "vm",
            "busybox",
            "true",
        ]);
        c
    }) {
        Ok(v) => out.push(series("twinbox --isolation vm", location, v)),
        Err(e) => out.push(skipped("twinbox --isolation vm", &e)),
    }
    let Some(kernel) = crate::paths::guest_kernel(&crate::paths::default_cache()) else {
        out.push(skipped(
            "kernel to init",
            "no guest kernel (kernel-config/build.sh)",
        ));
        return out;
    };
    let initrd =
        std::env::temp_dir().join(format!("twinbox-bench-init-{}.cpio", std::process::id()));
    if let Err(e) = mini_initrd(&initrd) {
        out.push(skipped("kernel to init", &e));
        return out;
    }
    match time_runs(runs, |_| {
        let mut c = twinbox(&engine.paths);
        c.arg("vm-boot")
            .arg("--kernel")
            .arg(&kernel)
            .arg("--initrd")
            .arg(&initrd)
            .arg("--quiet");
        c
    }) {
        Ok(v) => out.push(series("twinbox VMM: kernel to init", location, v)),
        Err(e) => out.push(skipped("twinbox VMM: kernel to init", &e)),
    }
    match which("qemu-system-x86_64") {
        None => out.push(skipped(
            "qemu -M microvm: kernel to init",
            "qemu-system-x86_64 is not installed",
        )),
        Some(q) => match time_runs(runs, |_| {
            let mut c = Command::new(&q);
            c.args([
                "-M",
                "microvm",
                "-enable-kvm",
                "-cpu",
                "host",
                "-m",
                "256",
                "-smp",
                "1",
            ])
            .args([
                "-nodefaults",
                "-no-user-config",
                "-nographic",
                "-serial",
                "null",
                "-no-reboot",
            ])
            .arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 reboot=t panic=-1 quiet"]);
            c
        }) {
            Ok(v) => out.push(series("qemu -M microvm: kernel to init", location, v)),
            Err(e) => out.push(skipped("qemu -M microvm: kernel to init", &e)),
        },
    }
    match which("firecracker") {
        None => out.push(skipped(
            "firecracker",
            "firecracker is not installed (not in Debian's packages)",
        )),
        Some(_) => out.push(skipped(
            "firecracker",
            "installed, but twinbox does not drive it yet",
        )),
    }
    let _ = std::fs::remove_file(&initrd);
    out
}

/// `time -p` output's "real" seconds, in ms.
fn real_ms(stderr: &str) -> Option<f64> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("real "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| s * 1e3)
}

const CPU_LOOP: &str = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done";

/// A workload timed inside the sandbox with `time -p`: ms per run.
/// `script`'s wall time (busybox `time -p`, measured where it runs), `runs` times
/// after one warm-up: on the host, or in a container with `run_args` (e.g. `-v`).
fn timed_inside(
    engine: &crate::engine::Engine,
    isolation: Option<&str>,
    run_args: &[&str],
    script: &str,
    runs: usize,
) -> Result<Vec<f64>, String> {
    let mut v = Vec::new();
    for i in 0..=runs {
        let o = match isolation {
            None => Command::new("/bin/busybox")
                .args(["time", "-p", "/bin/busybox", "sh", "-c", script])
                .output(),
            Some(iso) => twinbox(&engine.paths)
                .args(["run", "--rm", "--isolation", iso])
                .args(run_args)
                .args(["busybox", "time", "-p", "sh", "-c", script])
                .output(),
        }
        .map_err(|e| e.to_string())?;
        let err = String::from_utf8_lossy(&o.stderr);
        let ms = real_ms(&err).ok_or_else(|| format!("no timing in: {}", err.trim()))?;
        if i > 0 {
            v.push(ms);
        }
    }
    Ok(v)
}

pub fn cpu(
    engine: &crate::engine::Engine,
    runs: usize,
    isolations: &[&str],
    location: &str,
) -> Vec<Series> {
    let mut out = Vec::new();
    match timed_inside(engine, None, &[], CPU_LOOP, runs) {
        Ok(v) => out.push(series(&format!("host ({location})"), location, v)),
        Err(e) => out.push(skipped("host", &e)),
    }
    for iso in isolations {
        let name = format!("twinbox --isolation {iso}");
        out.push(measured(
            &name,
            location,
            timed_inside(engine, Some(iso), &[], CPU_LOOP, runs),
        ));
    }
    out
}

const IO_SCRIPT: &str = "dd if=/dev/zero of=/tmp/tb-io bs=1M count=64 conv=fsync 2>/dev/null && dd if=/tmp/tb-io of=/dev/null bs=1M 2>/dev/null; rm -f /tmp/tb-io";
/// Metadata-heavy, the same everywhere: a tar of ~400 small files (one per busybox
/// applet) unpacked five times over, synced and deleted.
const META_SCRIPT: &str = "mkdir -p /tmp/tb-t && for f in $(busybox --list); do echo x > /tmp/tb-t/$f; done && tar -cf /tmp/tb-t.tar -C /tmp/tb-t . && rm -rf /tmp/tb-t && for i in 1 2 3 4 5; do mkdir /tmp/tb-u && tar -xf /tmp/tb-t.tar -C /tmp/tb-u && sync && rm -rf /tmp/tb-u; done; rm -f /tmp/tb-t.tar";

/// The two io workloads, with their name and the directory they use as /tmp.
fn io_workloads(dir: &str) -> [(&'static str, String); 2] {
    [
        ("write+fsync+read 64 MiB", IO_SCRIPT.replace("/tmp/", dir)),
        ("untar 400 files x5", META_SCRIPT.replace("/tmp/", dir)),
    ]
}

pub fn io(
    engine: &crate::engine::Engine,
    runs: usize,
    isolations: &[&str],
    location: &str,
) -> Vec<Series> {
    let mut out = Vec::new();
    // The host writes where the containers' writable layers live.
    let dir = engine.paths.root.join("bench-io");
    let _ = std::fs::create_dir_all(&dir);
    for (what, script) in io_workloads(&format!("{}/", dir.display())) {
        let name = format!("{what}: host filesystem ({location})");
        match timed_inside(engine, None, &[], &script, runs) {
            Ok(v) => out.push(series(&name, location, v)),
            Err(e) => out.push(skipped(&name, &e)),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    for iso in isolations {
        // A process container's writable layer is an overlay on the host and its
        // volume a bind mount; a microVM reaches both through virtio-fs.
        let via = if *iso == "vm" { ", virtio-fs" } else { "" };
        let vol = format!("tb-bench-io-{}", std::process::id());
        for (what, script) in io_workloads("/tmp/") {
            let name = format!("{what}: --isolation {iso} (writable layer{via})");
            out.push(measured(
                &name,
                location,
                timed_inside(engine, Some(iso), &[], &script, runs),
            ));
        }
        for (what, script) in io_workloads("/vol/") {
            let name = format!("{what}: --isolation {iso} (volume{via})");
            out.push(measured(
                &name,
                location,
                timed_inside(
                    engine,
                    Some(iso),
                    &["-v", &format!("{vol}:/vol")],
                    &script,
                    runs,
                ),
            ));
        }
        let _ = engine.volume_remove(&vol);
        if *iso == "vm" {
            out.extend(io_virtio_blk(engine, runs, location));
        }
    }
    out
}

/// The same workloads in a bare microVM on an ext4 virtio-blk disk (what microVM
/// roots and volumes were before virtio-fs): the host makes an empty ext4 file with
/// mkfs.ext4 and never mounts it; the guest's init mounts it, times each workload with
/// `time -p` on the console, and powers off.
fn io_virtio_blk(engine: &crate::engine::Engine, runs: usize, location: &str) -> Vec<Series> {
    let names: Vec<String> = io_workloads("/d/")
        .iter()
        .map(|(what, _)| format!("{what}: bare microVM (ext4 on virtio-blk)"))
        .collect();
    let fail = |e: &str| names.iter().map(|n| skipped(n, e)).collect::<Vec<_>>();
    let Some(kernel) = crate::paths::guest_kernel(&crate::paths::default_cache()) else {
        return fail("no guest kernel (kernel-config/build.sh)");
    };
    let Some(mkfs) = which("mkfs.ext4") else {
        return fail("mkfs.ext4 not found: install e2fsprogs");
    };
    let work = match tempfile::tempdir() {
        Ok(w) => w,
        Err(e) => return fail(&e.to_string()),
    };
    let disk = work.path().join("disk.ext4");
    let initrd = work.path().join("io.cpio");
    let mut script = String::from(
        "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nmount -t proc proc /proc\nmount -t devtmpfs dev /dev\nmkdir -p /d && mount -t ext4 /dev/vda /d || reboot -f\n",
    );
    for (k, (_, s)) in io_workloads("/d/").iter().enumerate() {
        script += &format!("echo tb-io-{k}; time -p sh -c '{s}'\n");
    }
    script += "umount /d; reboot -f\n";
    let made = (|| -> Result<(), String> {
        let f = std::fs::File::create(&disk).map_err(|e| e.to_string())?;
        f.set_len(1 << 30).map_err(|e| e.to_string())?;
        let o = Command::new(&mkfs)
            .args(["-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1"])
            .arg(&disk)
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
        }
        busybox_initrd(&initrd, &script)
    })();
    if let Err(e) = made {
        return fail(&e);
    }
    let mut samples = vec![Vec::new(); names.len()];
    for i in 0..=runs {
        let o = twinbox(&engine.paths)
            .arg("vm-boot")
            .arg("--kernel")
            .arg(&kernel)
            .arg("--initrd")
            .arg(&initrd)
            .arg("--disk")
            .arg(&disk)
            .args(["--quiet", "--timeout", "300"])
            .output();
        let o = match o {
            Ok(o) => o,
            Err(e) => return fail(&e.to_string()),
        };
        let console = String::from_utf8_lossy(&o.stderr);
        for (k, v) in samples.iter_mut().enumerate() {
            let after = console.split(&format!("tb-io-{k}")).nth(1).unwrap_or("");
            let Some(ms) = real_ms(after) else {
                return fail(&format!(
                    "no timing on the console: {}",
                    console.lines().last().unwrap_or("").trim()
                ));
            };
            if i > 0 {
                v.push(ms);
            }
        }
    }
    names
        .iter()
        .zip(samples)
        .map(|(n, v)| series(n, location, v))
        .collect()
}

/// Proportional set size of `pid` and all its descendants, bytes.
fn tree_pss(pid: i32) -> u64 {
    let pss = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let mut children = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                children.extend(c.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
            }
        }
    }
    pss + children.into_iter().map(tree_pss).sum::<u64>()
}

/// Host memory per sleeping sandbox (MiB): the PSS of each container's monitor and
/// everything under it (for vm: the VMM with the guest pages it holds).
pub fn density(
    engine: &crate::engine::Engine,
    isolation: &str,
    count: usize,
    location: &str,
) -> Series {
    let name = format!("twinbox --isolation {isolation}: {count} sleeping sandboxes");
    let mut ids = Vec::new();
    for _ in 0..count {
        match twinbox(&engine.paths)
            .args([
                "run",
                "-d",
                "--isolation",
                isolation,
                "busybox",
                "sleep",
                "600",
            ])
            .output()
        {
            Ok(o) if o.status.success() => {
                ids.push(String::from_utf8_lossy(&o.stdout).trim().to_string())
            }
            Ok(o) => {
                let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
                cleanup(engine, &ids);
                return skipped(&name, &e);
            }
            Err(e) => return skipped(&name, &e.to_string()),
        }
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    let per: Vec<f64> = ids
        .iter()
        .filter_map(|id| engine.store.load(id).ok())
        .map(|r| tree_pss(r.state.monitor_pid) as f64 / (1024.0 * 1024.0))
        .collect();
    cleanup(engine, &ids);
    series(&name, location, per)
}

fn cleanup(engine: &crate::engine::Engine, ids: &[String]) {
    if !ids.is_empty() {
        let _ = twinbox(&engine.paths)
            .arg("rm")
            .arg("-f")
            .args(ids)
            .output();
    }
}

/// Write `report` as JSON and one SVG per suite into `dir`.
pub fn write(report: &Report, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    let p = dir.join("bench.json");
    std::fs::write(
        &p,
        serde_json::to_string_pretty(report).map_err(std::io::Error::other)?,
    )?;
    files.push(p);
    for s in &report.suites {
        let data: Vec<(String, Vec<f64>)> = s
            .series
            .iter()
            .filter(|x| x.skipped.is_none())
            .map(|x| (format!("{} [{}]", x.name, x.location), x.samples.clone()))
            .collect();
        if data.is_empty() {
            continue;
        }
        let svg = if s.suite == "density" {
            svg::ratio_bars(
                &format!("{}: {}", s.suite, s.unit),
                &data
                    .iter()
                    .map(|(n, v)| (n.clone(), v[0]))
                    .collect::<Vec<_>>(),
            )
        } else {
            svg::strip_plot(
                &format!("{}: {} (dots: runs, red: median)", s.suite, s.unit),
                &data,
            )
        };
        let p = dir.join(format!("{}.svg", s.suite));
        std::fs::write(&p, svg)?;
        files.push(p);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_time_p() {
        assert_eq!(real_ms("real 1.25\nuser 1.00\nsys 0.01\n"), Some(1250.0));
        assert_eq!(real_ms("nothing"), None);
    }

    #[test]
    fn mini_initrd_has_an_init() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("i.cpio");
        assert!(
            Path::new("/bin/busybox").exists(),
            "needs busybox-static (scripts/setup.sh installs it)"
        );
        mini_initrd(&p).unwrap();
        let data = std::fs::read(&p).unwrap();
        assert!(data.windows(4).any(|w| w == b"init"));
    }
}
