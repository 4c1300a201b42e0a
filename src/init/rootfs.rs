//! The container's filesystem view: overlay root, /proc, /sys, /dev, the /etc files,
//! pivot_root, and Docker's masked and read-only paths. Runs in the container's
//! fresh mount namespace, so every mount disappears with it.

use super::SetupError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// Paths Docker hides from containers.
pub const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only.
pub const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Device nodes created in the container's /dev: name, major, minor.
pub const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn nix_step(step: &str) -> impl FnOnce(nix::Error) -> SetupError + '_ {
    move |e| SetupError {
        step: step.to_string(),
        errno: e as i32,
    }
}

fn io_step(step: &str) -> impl FnOnce(io::Error) -> SetupError + '_ {
    move |e| SetupError::new(step, e)
}

/// What to mount for one container.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    /// A filesystem (source, type) mounted at `target` as the root instead of the
    /// overlay of `lower`, `upper` and `work` (a microVM: its virtio-fs root share, the
    /// host's overlay of the same layers).
    pub root_fs: Option<(String, String)>,
    /// Image layers, lowest first.
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where the overlay is mounted (inside the container's mount namespace).
    pub target: PathBuf,
    /// Host files bind-mounted over /etc/hostname, /etc/hosts, /etc/resolv.conf.
    pub etc_files: Vec<(PathBuf, &'static str)>,
    /// Volumes, bind mounts and tmpfs, mounted last, in order.
    pub mounts: Vec<super::mounts::PlannedMount>,
    /// `--privileged`: /sys writable, the host's device nodes in /dev.
    pub privileged: bool,
    /// `--read-only`: the root filesystem is mounted read-only once everything is on it.
    pub read_only: bool,
}

/// `--userns remap`: the layers are mounted idmapped (through `userns`) under
/// `staging`, and what the container's root owns belongs to host `uid`/`gid`.
#[derive(Debug, Clone)]
pub struct RootIdmap {
    pub userns: std::os::fd::RawFd,
    pub staging: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

/// Overlay mount options for `plan` (upper layers first, as overlayfs wants).
pub fn overlay_options(plan: &RootfsPlan) -> String {
    overlay_options_of(&plan.lower, &plan.upper, &plan.work)
}

/// Overlay mount options for `lower` (lowest first), `upper` and `work`.
pub fn overlay_options_of(lower: &[PathBuf], upper: &Path, work: &Path) -> String {
    let lower: Vec<String> = lower
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    )
}

fn ensure_file(path: &Path) -> Result<(), SetupError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_step("create /etc"))?;
    }
    if fs::symlink_metadata(path).is_err() {
        fs::write(path, b"").map_err(io_step("create an /etc file"))?;
    }
    Ok(())
}

/// With `--userns remap`: idmapped views of the image's layers under the staging
/// directory; the plan to overlay them instead.
fn idmapped_layers(plan: &RootfsPlan, m: &RootIdmap) -> Result<RootfsPlan, SetupError> {
    let mut out = plan.clone();
    let view = |src: &Path, name: String| -> Result<PathBuf, SetupError> {
        let at = m.staging.join(name);
        fs::create_dir_all(&at).map_err(io_step("create idmap staging"))?;
        super::mounts::mount_idmapped(src, &at, m.userns).map_err(io_step("idmap a layer"))?;
        Ok(at)
    };
    for (i, l) in plan.lower.iter().enumerate() {
        out.lower[i] = view(l, format!("l{i}"))?;
    }
    // The writable layer is not idmapped (overlayfs makes its work directories with
    // the mounter's ids, which the mapping does not hold): what the container writes
    // is stored with its host ids, and the layer's root is its root's.
    nix::unistd::chown(
        &plan.upper,
        Some(nix::unistd::Uid::from_raw(m.uid)),
        Some(nix::unistd::Gid::from_raw(m.gid)),
    )
    .map_err(nix_step("chown the writable layer"))?;
    Ok(out)
}

/// Make the mount tree private, mount the overlay root and everything under it.
pub fn mount_all(plan: &RootfsPlan, idmap: Option<&RootIdmap>) -> Result<(), SetupError> {
    crate::util::fs::make_mounts_private().map_err(nix_step("make / private"))?;
    let t = &plan.target;
    match &plan.root_fs {
        Some((source, fstype)) => mount(
            Some(source.as_str()),
            t,
            Some(fstype.as_str()),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(nix_step("mount the root share"))?,
        None => {
            let layers = match idmap {
                Some(m) => idmapped_layers(plan, m)?,
                None => plan.clone(),
            };
            mount(
                Some("overlay"),
                t,
                Some("overlay"),
                MsFlags::empty(),
                Some(overlay_options(&layers).as_str()),
            )
            .map_err(nix_step("mount the overlay root"))?;
        }
    }
    // tmpfs mounts belong to the container's root (a remapped one: its host ids).
    let owner = idmap
        .map(|m| format!(",uid={},gid={}", m.uid, m.gid))
        .unwrap_or_default();

    let common = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    // Mount points and /etc files are found inside the root: a symlink the container
    // left in its writable layer (`/etc -> /root/.ssh`) is followed within it, never
    // out to the host's tree, where this runs.
    let inside = |p: &str| super::mounts::resolve_in(t, p);
    let mut points = std::collections::HashMap::new();
    for d in ["proc", "sys", "dev", "tmp"] {
        let at = inside(d).map_err(io_step("resolve mount points"))?;
        fs::create_dir_all(&at).map_err(io_step("create mount points"))?;
        points.insert(d, at);
    }
    // /dev is a fresh tmpfs from here: its paths hold nothing of the container's.
    let sub = |p: &str| -> PathBuf {
        match p.split_once('/') {
            Some((top, rest)) => points[top].join(rest),
            None => points[p].clone(),
        }
    };
    mount(
        Some("proc"),
        &sub("proc"),
        Some("proc"),
        common,
        None::<&str>,
    )
    .map_err(nix_step("mount /proc"))?;
    let sys_ro = if plan.privileged {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    mount(
        Some("sysfs"),
        &sub("sys"),
        Some("sysfs"),
        common | sys_ro,
        None::<&str>,
    )
    .map_err(nix_step("mount /sys"))?;
    mount(
        Some("tmpfs"),
        &sub("dev"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some(format!("mode=755,size=65536k{owner}").as_str()),
    )
    .map_err(nix_step("mount /dev"))?;
    for (name, major, minor) in DEVICES {
        let p = sub("dev").join(name);
        mknod(
            &p,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(*major, *minor),
        )
        .map_err(nix_step("create device nodes"))?;
        // mknod honours the umask; make the mode exact.
        nix::sys::stat::fchmodat(
            None,
            &p,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(nix_step("chmod device nodes"))?;
        if let Some(m) = idmap {
            nix::unistd::chown(
                &p,
                Some(nix::unistd::Uid::from_raw(m.uid)),
                Some(nix::unistd::Gid::from_raw(m.gid)),
            )
            .map_err(nix_step("chown device nodes"))?;
        }
    }
    if plan.privileged {
        host_devices(&sub("dev"))?;
    }
    for d in ["pts", "shm", "mqueue"] {
        fs::create_dir_all(sub("dev").join(d)).map_err(io_step("create /dev dirs"))?;
    }
    mount(
        Some("devpts"),
        &sub("dev/pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(
            format!(
                "newinstance,ptmxmode=0666,mode=0620,gid={}",
                idmap.map_or(5, |m| m.gid + 5)
            )
            .as_str(),
        ),
    )
    .map_err(nix_step("mount /dev/pts"))?;
    mount(
        Some("shm"),
        &sub("dev/shm"),
        Some("tmpfs"),
        common,
        Some(format!("mode=1777,size=65536k{owner}").as_str()),
    )
    .map_err(nix_step("mount /dev/shm"))?;
    mount(
        Some("mqueue"),
        &sub("dev/mqueue"),
        Some("mqueue"),
        common,
        None::<&str>,
    )
    .map_err(nix_step("mount /dev/mqueue"))?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        symlink(target, sub("dev").join(link)).map_err(io_step("create /dev links"))?;
    }
    // Volumes, binds and tmpfs before the /etc files, so that a volume at /etc still
    // gets the container's hostname, hosts and resolv.conf on top (as Docker does).
    // Device-backed volumes (microVMs) are staged outside the container's tree.
    super::mounts::mount_all(t, &plan.mounts, Path::new("/run/twinbox-volumes"), idmap)?;
    for (src, dst) in &plan.etc_files {
        let d = inside(dst).map_err(io_step("resolve /etc files"))?;
        ensure_file(&d)?;
        mount(
            Some(src.as_path()),
            &d,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(nix_step("bind-mount /etc files"))?;
    }
    if plan.read_only {
        // Only the root's own mount: /proc, /dev, volumes and tmpfs keep their flags.
        mount(
            None::<&str>,
            t,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(nix_step("remount the root read-only"))?;
    }
    Ok(())
}

/// `--privileged`: a node for every character and block device of the host's /dev
/// (and its subdirectories one level down, such as /dev/net/tun), as Docker makes them.
fn host_devices(dev: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let mut dirs = vec![(PathBuf::from("/dev"), dev.to_path_buf(), 0)];
    while let Some((from, to, depth)) = dirs.pop() {
        let Ok(rd) = fs::read_dir(&from) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            // The container's own terminal multiplexer and links stay its own.
            if depth == 0
                && ["ptmx", "fd", "stdin", "stdout", "stderr", "core", "console"]
                    .iter()
                    .any(|x| name == *x)
            {
                continue;
            }
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            let ft = m.file_type();
            let target = to.join(&name);
            if ft.is_dir() {
                if depth == 0 && !["pts", "shm", "mqueue"].iter().any(|x| name == *x) {
                    let _ = fs::create_dir_all(&target);
                    dirs.push((e.path(), target, depth + 1));
                }
                continue;
            }
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else {
                continue;
            };
            if fs::symlink_metadata(&target).is_ok() {
                continue;
            }
            let mode = Mode::from_bits_truncate(m.permissions().mode() & 0o777);
            mknod(&target, kind, mode, m.rdev()).map_err(nix_step("create host device nodes"))?;
            let _ = nix::unistd::chown(
                &target,
                Some(nix::unistd::Uid::from_raw(m.uid())),
                Some(nix::unistd::Gid::from_raw(m.gid())),
            );
            let _ = fs::set_permissions(&target, fs::Permissions::from_mode(mode.bits()));
        }
    }
    Ok(())
}

/// Switch the root to `target` and detach the old root entirely.
pub fn pivot(target: &Path) -> Result<(), SetupError> {
    nix::unistd::chdir(target).map_err(nix_step("chdir to the new root"))?;
    nix::unistd::pivot_root(".", ".").map_err(nix_step("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(nix_step("detach the old root"))?;
    nix::unistd::chdir("/").map_err(nix_step("chdir /"))?;
    Ok(())
}

/// Hide the masked paths and make the read-only ones read-only, under `root` ("/" after
/// pivot_root; the container root's path when the caller stays outside it).
pub fn mask_and_protect(root: &Path) -> Result<(), SetupError> {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    for p in MASKED {
        let p = &at(p);
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => mount(
                Some("tmpfs"),
                p,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(nix_step("mask a directory"))?,
            Ok(_) => mount(
                Some("/dev/null"),
                p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(nix_step("mask a file"))?,
            Err(_) => {}
        }
    }
    for p in READONLY {
        let p = &at(p);
        if fs::symlink_metadata(p).is_err() {
            continue;
        }
        mount(
            Some(p.as_path()),
            p,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(nix_step("bind a read-only path"))?;
        mount(
            None::<&str>,
            p,
            None::<&str>,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(nix_step("remount a path read-only"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_puts_top_layer_first() {
        let plan = RootfsPlan {
            root_fs: None,
            lower: vec!["/l/base".into(), "/l/top".into()],
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            target: "/r".into(),
            etc_files: vec![],
            mounts: vec![],
            privileged: false,
            read_only: false,
        };
        assert_eq!(
            overlay_options(&plan),
            "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"
        );
    }

    #[test]
    fn masks_match_docker() {
        assert!(MASKED.contains(&"/proc/kcore"));
        assert!(READONLY.contains(&"/proc/sysrq-trigger"));
    }
}
