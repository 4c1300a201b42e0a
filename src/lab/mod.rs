//! `twinbox lab`: run twinbox inside an emulated machine that has AMD-V.
//!
//! Hosts whose /dev/kvm cannot run a standard guest (PVM, see docs/lab.md §1) can still run the
//! vm backend for real: qemu's TCG emulates an x86 machine with SVM and nested paging
//! (L1); L1 boots Debian's cloud kernel, loads kvm_amd, and runs twinbox, whose VMM then
//! uses L1's /dev/kvm. Timings in the lab are emulated: good for correctness and for
//! ratios between runs in the same lab, not for absolute numbers.

mod assets;

use crate::util::cpio::CpioWriter;
use crate::util::fs::which;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LabError {
    #[error("{0}")]
    Tool(String),
    #[error("qemu-system-x86_64 was not found: install it (scripts/setup.sh does)")]
    NoQemu,
    #[error("no guest kernel found: build it with kernel-config/build.sh (scripts/setup.sh does), or set TWINBOX_KERNEL")]
    NoGuestKernel,
    #[error("the lab machine did not finish within {0} s")]
    Timeout(u64),
    #[error("the lab machine stopped without reporting an exit code (its console: {0})")]
    NoExit(String),
}

/// What to run in the lab.
#[derive(Debug)]
pub struct LabRun {
    /// `twinbox ARGS…`, or a shell script (with twinbox on PATH).
    pub what: LabCommand,
    pub cpu: String,
    pub mem_mib: u64,
    pub smp: u8,
    pub timeout: u64,
    /// Show L1's console on stderr.
    pub console: bool,
    pub cache: PathBuf,
    /// Put qemu (with its libraries and firmware) in the lab too, as a peer VMM for
    /// benchmarks.
    pub with_qemu: bool,
    /// Host files attached read-only as virtio disks: /dev/vda, /dev/vdb, … in L1. How
    /// big inputs (image archives, root filesystems) get into the lab without going
    /// through its initramfs, i.e. its memory.
    pub disks: Vec<PathBuf>,
}

#[derive(Debug)]
pub enum LabCommand {
    Args(Vec<String>),
    Script(String),
}

pub use crate::paths::{default_cache, guest_kernel};

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

const L1_INIT: &str = r#"#!/bin/busybox sh
# L1 /init: mount, load modules, run the command, report its exit code, power off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# An initramfs root cannot be pivot_root'ed away from (containers need that): move
# everything to a tmpfs root first, as a real machine's root filesystem would be.
if [ "$1" != stage2 ]; then
    mkdir -p /newroot
    mount -t tmpfs -o size=90% tmpfs /newroot
    for d in /*; do
        case "$d" in /newroot|/proc|/sys|/dev) ;; *) cp -a "$d" /newroot/ ;; esac
    done
    mkdir -p /newroot/proc /newroot/sys /newroot/dev
    exec switch_root /newroot /init stage2
fi
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /tmp /run /var/lib /sys/fs/cgroup
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
for m in $(cat /lab/modules.order); do insmod /lab/modules/$m.ko 2>/dev/null || echo "lab: insmod $m failed"; done
ip link set lo up
stty -F /dev/ttyS1 raw -echo 2>/dev/null
stty -F /dev/ttyS2 raw -echo 2>/dev/null
export TWINBOX_KERNEL=/lab/vmlinux TWINBOX_ROOT=/var/lib/twinbox TWINBOX_RUN_ROOT=/run/twinbox HOME=/root
[ -c /dev/kvm ] || echo "lab: no /dev/kvm in L1"
cd /tmp
# The scenario gets a network namespace of its own (with only lo): whatever it builds
# (bridges, NAT, published ports) lives and dies there.
unshare -n sh -c 'ip link set lo up; exec sh /lab/cmd.sh' </dev/null >/dev/ttyS1 2>/dev/ttyS2
echo "TWINBOX-LAB-EXIT=$?" >/dev/ttyS0
sync
poweroff -f
"#;

/// `program` at `dest` in L1, with the libraries it loads at their own paths.
fn add_program(
    files: &mut Vec<(PathBuf, String)>,
    program: &Path,
    dest: &str,
) -> Result<(), LabError> {
    for f in assets::program_with_libs(program)? {
        let d = if f == program {
            dest.to_string()
        } else {
            f.display().to_string().trim_start_matches('/').to_string()
        };
        files.push((f, d));
    }
    Ok(())
}

/// The part of L1's initramfs that rarely changes, cached by content.
fn base_image(cache: &Path, guest_kernel: &Path, with_qemu: bool) -> Result<PathBuf, LabError> {
    let l1 = assets::l1_kernel(cache)?;
    let files = base_files(&l1, guest_kernel, with_qemu)?;
    let key = base_key(&l1, &files)?;
    let out = cache.join("lab").join(format!("base-{key}.cpio"));
    if out.exists() {
        return Ok(out);
    }
    write_base(cache, &out, &l1, &files)?;
    Ok(out)
}

/// What goes into L1 (host file, path in the image): busybox and the tools the tests
/// use, virtiofsd, the guest kernel, L1's bzImage, qemu with its firmware, L1's modules.
fn base_files(
    l1: &assets::L1Kernel,
    guest_kernel: &Path,
    with_qemu: bool,
) -> Result<Vec<(PathBuf, String)>, LabError> {
    let busybox = PathBuf::from("/bin/busybox");
    let mkfs = ["/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| LabError::Tool("mkfs.ext4 not found: install e2fsprogs".into()))?;
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    files.push((busybox.clone(), "bin/busybox".into()));
    add_program(&mut files, &mkfs, "sbin/mkfs.ext4")?;
    let nft =
        which("nft").ok_or_else(|| LabError::Tool("nft not found: install nftables".into()))?;
    add_program(&mut files, &nft, "usr/sbin/nft")?;
    // GNU tar, as on the hosts twinbox runs on: `export` writes numeric owners and
    // xattrs, which busybox's tar cannot.
    let tar = which("tar").ok_or_else(|| LabError::Tool("tar not found: install tar".into()))?;
    add_program(&mut files, &tar, "bin/tar")?;
    // virtiofsd: the back end of microVM volumes and bind mounts (virtio-fs).
    let fsd = crate::microvm::virtiofsd::binary().map_err(|e| LabError::Tool(e.to_string()))?;
    let fsd = std::fs::canonicalize(&fsd)
        .map_err(|e| LabError::Tool(format!("{}: {e}", fsd.display())))?;
    add_program(
        &mut files,
        &fsd,
        crate::microvm::virtiofsd::INSTALLED.trim_start_matches('/'),
    )?;
    files.push((guest_kernel.to_path_buf(), "lab/vmlinux".into()));
    // L1's own kernel is a bzImage: the VMM's bzImage path is tested with it.
    files.push((l1.vmlinuz.clone(), "lab/bzimage".into()));
    if with_qemu {
        let qemu = which("qemu-system-x86_64").ok_or(LabError::NoQemu)?;
        add_program(&mut files, &qemu, "usr/bin/qemu-system-x86_64")?;
        // qemu finds firmware in <bindir>/../share/qemu; -M microvm needs its BIOS and
        // -kernel with a vmlinux needs pvh.bin (both symlinks in Debian: copied as files).
        for fw in ["bios-microvm.bin", "pvh.bin"] {
            let p = Path::new("/usr/share/qemu").join(fw);
            let real = std::fs::canonicalize(&p)
                .map_err(|e| LabError::Tool(format!("{}: {e}", p.display())))?;
            files.push((real, format!("usr/share/qemu/{fw}")));
        }
    }
    for m in &l1.modules {
        let name = m
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        files.push((m.clone(), format!("lab/modules/{name}")));
    }
    Ok(files)
}

/// The cache key: everything that goes in (names, sizes, modification times).
fn base_key(l1: &assets::L1Kernel, files: &[(PathBuf, String)]) -> Result<String, LabError> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(l1.version.as_bytes());
    h.update(L1_INIT.as_bytes());
    for (src, dest) in files {
        let meta = std::fs::metadata(src)
            .map_err(|e| LabError::Tool(format!("{}: {e}", src.display())))?;
        h.update(dest.as_bytes());
        h.update(meta.len().to_le_bytes());
        h.update(
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .to_le_bytes(),
        );
    }
    let key = hex::encode(&h.finalize()[..8]);
    Ok(key)
}

/// Write the base image (to a temporary name, then renamed into place).
fn write_base(
    cache: &Path,
    out: &Path,
    l1: &assets::L1Kernel,
    files: &[(PathBuf, String)],
) -> Result<(), LabError> {
    std::fs::create_dir_all(cache.join("lab")).map_err(|e| LabError::Tool(e.to_string()))?;
    let tmp = out.with_extension("tmp");
    let f = std::fs::File::create(&tmp).map_err(|e| LabError::Tool(e.to_string()))?;
    let mut w = CpioWriter::new(std::io::BufWriter::new(f));
    let err = |e: std::io::Error| LabError::Tool(format!("writing the lab image: {e}"));
    let mut dirs = BTreeDirs::default();
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "lab",
        "lab/modules",
        "proc",
        "sys",
        "dev",
        "root",
        "etc",
    ] {
        dirs.add(&mut w, d).map_err(err)?;
    }
    for (src, dest) in files {
        if let Some(parent) = Path::new(dest).parent() {
            dirs.add(&mut w, &parent.display().to_string())
                .map_err(err)?;
        }
        let data =
            std::fs::read(src).map_err(|e| LabError::Tool(format!("{}: {e}", src.display())))?;
        w.file(dest, 0o755, &data).map_err(err)?;
    }
    let order: Vec<String> = l1
        .modules
        .iter()
        .map(|m| {
            m.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    w.file("lab/modules.order", 0o644, order.join("\n").as_bytes())
        .map_err(err)?;
    w.file("init", 0o755, L1_INIT.as_bytes()).map_err(err)?;
    w.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        .map_err(err)?;
    w.finish().map_err(err)?;
    std::fs::rename(&tmp, out).map_err(|e| LabError::Tool(e.to_string()))?;
    Ok(())
}

/// Directories already written to a cpio (each once, parents first).
#[derive(Default)]
struct BTreeDirs(std::collections::BTreeSet<String>);

impl BTreeDirs {
    fn add<W: Write>(&mut self, w: &mut CpioWriter<W>, dir: &str) -> std::io::Result<()> {
        let mut cur = String::new();
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(part);
            if self.0.insert(cur.clone()) {
                w.dir(&cur, 0o755)?;
            }
        }
        Ok(())
    }
}

/// twinbox's own binaries (static) and the command, appended as a second archive.
fn run_image(path: &Path, what: &LabCommand) -> Result<(), LabError> {
    let exe = std::env::current_exe().map_err(|e| LabError::Tool(e.to_string()))?;
    let agent = exe.with_file_name("twinbox-agent");
    let f = std::fs::File::create(path).map_err(|e| LabError::Tool(e.to_string()))?;
    let mut w = CpioWriter::new(std::io::BufWriter::new(f));
    let err = |e: std::io::Error| LabError::Tool(format!("writing the lab image: {e}"));
    w.file(
        "bin/twinbox",
        0o755,
        &std::fs::read(&exe).map_err(|e| LabError::Tool(e.to_string()))?,
    )
    .map_err(err)?;
    if agent.exists() {
        w.file(
            "bin/twinbox-agent",
            0o755,
            &std::fs::read(&agent).map_err(|e| LabError::Tool(e.to_string()))?,
        )
        .map_err(err)?;
    }
    let script = match what {
        LabCommand::Args(a) => format!(
            "exec twinbox {}\n",
            a.iter()
                .map(|s| shell_quote(s))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        LabCommand::Script(s) => s.clone(),
    };
    w.file("lab/cmd.sh", 0o755, script.as_bytes())
        .map_err(err)?;
    w.finish().map_err(err)?;
    Ok(())
}

/// What a lab run printed and how it ended.
#[derive(Debug)]
pub struct LabOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Run in the lab; returns the command's output and exit code.
pub fn run(r: &LabRun) -> Result<LabOutput, LabError> {
    let qemu = which("qemu-system-x86_64").ok_or(LabError::NoQemu)?;
    let kernel = guest_kernel(&r.cache).ok_or(LabError::NoGuestKernel)?;
    let base = base_image(&r.cache, &kernel, r.with_qemu)?;
    let l1 = assets::l1_kernel(&r.cache)?;
    let work = tempfile::Builder::new()
        .prefix("twinbox-lab")
        .tempdir()
        .map_err(|e| LabError::Tool(e.to_string()))?;
    let extra = work.path().join("run.cpio");
    run_image(&extra, &r.what)?;
    // The kernel unpacks concatenated archives in order.
    let initrd = work.path().join("l1.cpio");
    {
        let mut out = std::fs::File::create(&initrd).map_err(|e| LabError::Tool(e.to_string()))?;
        for part in [&base, &extra] {
            let mut f = std::fs::File::open(part).map_err(|e| LabError::Tool(e.to_string()))?;
            std::io::copy(&mut f, &mut out).map_err(|e| LabError::Tool(e.to_string()))?;
        }
    }
    let mut drives = Vec::new();
    for (i, d) in r.disks.iter().enumerate() {
        drives.extend(disk_args(d, i)?);
    }
    let console = work.path().join("console.log");
    let stdout = work.path().join("stdout");
    let stderr = work.path().join("stderr");
    let mut child = Command::new(qemu)
        .args(["-M", "q35", "-accel", "tcg", "-cpu", &r.cpu])
        .args(["-m", &r.mem_mib.to_string(), "-smp", &r.smp.to_string()])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", stdout.display()))
        .arg("-serial")
        .arg(format!("file:{}", stderr.display()))
        .arg("-kernel")
        .arg(&l1.vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .args(&drives)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| LabError::Tool(format!("qemu: {e}")))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(r.timeout);
    let status = loop {
        if let Some(s) = child
            .try_wait()
            .map_err(|e| LabError::Tool(e.to_string()))?
        {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read(&stdout).unwrap_or_default();
    let err = std::fs::read(&stderr).unwrap_or_default();
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    if r.console {
        eprintln!("--- lab console ---\n{log}--- end of lab console ---");
    }
    if status.is_none() {
        return Err(LabError::Timeout(r.timeout));
    }
    // The marker may share a line with terminal escapes from the firmware.
    let code = log.lines().find_map(|l| {
        let i = l.find("TWINBOX-LAB-EXIT=")?;
        let rest = &l[i + "TWINBOX-LAB-EXIT=".len()..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse::<i32>().ok()
    });
    match code {
        Some(c) => Ok(LabOutput {
            code: c,
            stdout: out,
            stderr: err,
        }),
        None => {
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(LabError::NoExit(tail.join(" | ")))
        }
    }
}

/// qemu arguments for one read-only disk. Its name in L1 is vd + a letter.
fn disk_args(path: &Path, index: usize) -> Result<Vec<String>, LabError> {
    if index >= 26 {
        return Err(LabError::Tool("at most 26 disks".into()));
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| LabError::Tool(format!("disk {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(LabError::Tool(format!(
            "disk {}: not a regular file",
            path.display()
        )));
    }
    let abs = std::fs::canonicalize(path)
        .map_err(|e| LabError::Tool(format!("disk {}: {e}", path.display())))?;
    // qemu's option parser splits on commas (",," escapes one).
    let file = abs.display().to_string().replace(',', ",,");
    Ok(vec![
        "-drive".into(),
        format!("file={file},format=raw,if=virtio,readonly=on,media=disk,index={index}"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_are_read_only_raw_virtio_drives() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a,b.tar");
        std::fs::write(&f, [0u8; 1024]).unwrap();
        let a = disk_args(&f, 1).unwrap();
        assert_eq!(a[0], "-drive");
        assert!(
            a[1].contains("a,,b.tar,format=raw,if=virtio,readonly=on"),
            "{}",
            a[1]
        );
        assert!(a[1].ends_with("index=1"));
        assert!(disk_args(d.path(), 0)
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
        assert!(disk_args(&d.path().join("nope"), 0).is_err());
    }

    #[test]
    fn quoting_survives_spaces_and_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
