//! The container's filesystem view: overlay root, /proc, /sys, /dev, the /etc files,
//! pivot_root, and Docker's masked and read-only paths. Runs in the container's
//! fresh mount namespace, so every mount disappears with it.

use super::syscall::{Linux, Syscall};
use super::SetupError;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use std::fs;
use std::io;
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
fn idmapped_layers(
    sys: &dyn Syscall,
    plan: &RootfsPlan,
    m: &RootIdmap,
) -> Result<RootfsPlan, SetupError> {
    let mut out = plan.clone();
    for (i, l) in plan.lower.iter().enumerate() {
        let at = m.staging.join(format!("l{i}"));
        fs::create_dir_all(&at).map_err(io_step("create idmap staging"))?;
        sys.mount_idmapped(l, &at, m.userns)
            .map_err(io_step("idmap a layer"))?;
        out.lower[i] = at;
    }
    // The writable layer is not idmapped (overlayfs makes its work directories with
    // the mounter's ids, which the mapping does not hold): what the container writes
    // is stored with its host ids, and the layer's root is its root's.
    sys.chown(&plan.upper, m.uid, m.gid)
        .map_err(nix_step("chown the writable layer"))?;
    Ok(out)
}

/// Make the mount tree private, mount the overlay root and everything under it.
pub fn mount_all(plan: &RootfsPlan, idmap: Option<&RootIdmap>) -> Result<(), SetupError> {
    mount_all_with(&Linux, plan, idmap)
}

/// [`mount_all`] through `sys`, in order: the root, /proc and /sys, /dev, the
/// volumes, the /etc files, and last the root read-only (`--read-only`).
pub fn mount_all_with(
    sys: &dyn Syscall,
    plan: &RootfsPlan,
    idmap: Option<&RootIdmap>,
) -> Result<(), SetupError> {
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(nix_step("make / private"))?;
    let t = &plan.target;
    mount_root(sys, plan, idmap)?;
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
    mount_kernel_fs(sys, &points["proc"], &points["sys"], plan.privileged)?;
    // /dev is a fresh tmpfs from here: its paths hold nothing of the container's.
    mount_dev(sys, &points["dev"], plan.privileged, idmap)?;
    // Volumes, binds and tmpfs before the /etc files, so that a volume at /etc still
    // gets the container's hostname, hosts and resolv.conf on top (as Docker does).
    // Device-backed volumes (microVMs) are staged outside the container's tree.
    super::mounts::mount_all_with(
        sys,
        t,
        &plan.mounts,
        Path::new("/run/twinbox-volumes"),
        idmap,
    )?;
    for (src, dst) in &plan.etc_files {
        let d = inside(dst).map_err(io_step("resolve /etc files"))?;
        ensure_file(&d)?;
        sys.mount(Some(src), &d, None, MsFlags::MS_BIND, None)
            .map_err(nix_step("bind-mount /etc files"))?;
    }
    if plan.read_only {
        // Only the root's own mount: /proc, /dev, volumes and tmpfs keep their flags.
        sys.mount(
            None,
            t,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None,
        )
        .map_err(nix_step("remount the root read-only"))?;
    }
    Ok(())
}

/// The root: a microVM's root share, or the overlay of the layers (idmapped for a
/// remapped container) and the writable layer.
fn mount_root(
    sys: &dyn Syscall,
    plan: &RootfsPlan,
    idmap: Option<&RootIdmap>,
) -> Result<(), SetupError> {
    let t = &plan.target;
    match &plan.root_fs {
        Some((source, fstype)) => sys
            .mount(
                Some(Path::new(source)),
                t,
                Some(fstype),
                MsFlags::empty(),
                None,
            )
            .map_err(nix_step("mount the root share")),
        None => {
            let layers = match idmap {
                Some(m) => idmapped_layers(sys, plan, m)?,
                None => plan.clone(),
            };
            sys.mount(
                Some(Path::new("overlay")),
                t,
                Some("overlay"),
                MsFlags::empty(),
                Some(&overlay_options(&layers)),
            )
            .map_err(nix_step("mount the overlay root"))
        }
    }
}

const COMMON: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// /proc, and /sys read-only (writable with `--privileged`).
fn mount_kernel_fs(
    sys: &dyn Syscall,
    proc: &Path,
    sysfs: &Path,
    privileged: bool,
) -> Result<(), SetupError> {
    sys.mount(Some(Path::new("proc")), proc, Some("proc"), COMMON, None)
        .map_err(nix_step("mount /proc"))?;
    let ro = if privileged {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    sys.mount(
        Some(Path::new("sysfs")),
        sysfs,
        Some("sysfs"),
        COMMON | ro,
        None,
    )
    .map_err(nix_step("mount /sys"))
}

/// A fresh /dev: tmpfs, Docker's device nodes (the host's too with `--privileged`),
/// devpts, shm, mqueue and the usual links. tmpfs mounts belong to the container's
/// root (a remapped one: its host ids).
fn mount_dev(
    sys: &dyn Syscall,
    dev: &Path,
    privileged: bool,
    idmap: Option<&RootIdmap>,
) -> Result<(), SetupError> {
    let owner = idmap
        .map(|m| format!(",uid={},gid={}", m.uid, m.gid))
        .unwrap_or_default();
    sys.mount(
        Some(Path::new("tmpfs")),
        dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some(&format!("mode=755,size=65536k{owner}")),
    )
    .map_err(nix_step("mount /dev"))?;
    for (name, major, minor) in DEVICES {
        let p = dev.join(name);
        let mode = Mode::from_bits_truncate(0o666);
        sys.mknod(
            &p,
            SFlag::S_IFCHR,
            mode,
            nix::sys::stat::makedev(*major, *minor),
        )
        .map_err(nix_step("create device nodes"))?;
        // mknod honours the umask; make the mode exact.
        sys.chmod(&p, mode)
            .map_err(nix_step("chmod device nodes"))?;
        if let Some(m) = idmap {
            sys.chown(&p, m.uid, m.gid)
                .map_err(nix_step("chown device nodes"))?;
        }
    }
    if privileged {
        host_devices(sys, dev)?;
    }
    for d in ["pts", "shm", "mqueue"] {
        fs::create_dir_all(dev.join(d)).map_err(io_step("create /dev dirs"))?;
    }
    let pts_gid = idmap.map_or(5, |m| m.gid + 5);
    sys.mount(
        Some(Path::new("devpts")),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(&format!(
            "newinstance,ptmxmode=0666,mode=0620,gid={pts_gid}"
        )),
    )
    .map_err(nix_step("mount /dev/pts"))?;
    sys.mount(
        Some(Path::new("shm")),
        &dev.join("shm"),
        Some("tmpfs"),
        COMMON,
        Some(&format!("mode=1777,size=65536k{owner}")),
    )
    .map_err(nix_step("mount /dev/shm"))?;
    sys.mount(
        Some(Path::new("mqueue")),
        &dev.join("mqueue"),
        Some("mqueue"),
        COMMON,
        None,
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
        sys.symlink(target, &dev.join(link))
            .map_err(io_step("create /dev links"))?;
    }
    Ok(())
}

/// `--privileged`: a node for every character and block device of the host's /dev
/// (and its subdirectories one level down, such as /dev/net/tun), as Docker makes them.
fn host_devices(sys: &dyn Syscall, dev: &Path) -> Result<(), SetupError> {
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
            sys.mknod(&target, kind, mode, m.rdev())
                .map_err(nix_step("create host device nodes"))?;
            let _ = sys.chown(&target, m.uid(), m.gid());
            let _ = sys.chmod(&target, mode);
        }
    }
    Ok(())
}

/// Switch the root to `target` and detach the old root entirely.
pub fn pivot(target: &Path) -> Result<(), SetupError> {
    pivot_with(&Linux, target)
}

/// [`pivot`] through `sys`: the old root is stacked under the new one (`pivot_root
/// . .`) and detached, so no path leads back to it.
pub fn pivot_with(sys: &dyn Syscall, target: &Path) -> Result<(), SetupError> {
    let here = Path::new(".");
    sys.chdir(target)
        .map_err(nix_step("chdir to the new root"))?;
    sys.pivot_root(here, here).map_err(nix_step("pivot_root"))?;
    sys.umount2(here, MntFlags::MNT_DETACH)
        .map_err(nix_step("detach the old root"))?;
    sys.chdir(Path::new("/")).map_err(nix_step("chdir /"))?;
    Ok(())
}

/// Hide the masked paths and make the read-only ones read-only, under `root` ("/" after
/// pivot_root; the container root's path when the caller stays outside it).
pub fn mask_and_protect(root: &Path) -> Result<(), SetupError> {
    mask_and_protect_with(&Linux, root)
}

/// [`mask_and_protect`] through `sys`: a masked directory gets an empty read-only
/// tmpfs, a masked file /dev/null; a read-only path is bound onto itself and remounted
/// read-only, nosuid, nodev, noexec. Paths the kernel lacks are skipped.
pub fn mask_and_protect_with(sys: &dyn Syscall, root: &Path) -> Result<(), SetupError> {
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    for p in MASKED {
        let p = &at(p);
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => sys
                .mount(
                    Some(Path::new("tmpfs")),
                    p,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    None,
                )
                .map_err(nix_step("mask a directory"))?,
            Ok(_) => sys
                .mount(
                    Some(Path::new("/dev/null")),
                    p,
                    None,
                    MsFlags::MS_BIND,
                    None,
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
        sys.mount(Some(p), p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
            .map_err(nix_step("bind a read-only path"))?;
        sys.mount(
            None,
            p,
            None,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None,
        )
        .map_err(nix_step("remount a path read-only"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::mounts::{MountSource, PlannedMount};
    use super::super::syscall::Recorder;
    use super::*;

    fn plan(root: &Path) -> RootfsPlan {
        RootfsPlan {
            root_fs: None,
            lower: vec!["/l/base".into(), "/l/top".into()],
            upper: "/c/upper".into(),
            work: "/c/work".into(),
            target: root.to_path_buf(),
            etc_files: vec![],
            mounts: vec![],
            privileged: false,
            read_only: false,
        }
    }

    fn index(calls: &[String], needle: &str) -> usize {
        calls
            .iter()
            .position(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("no call with {needle:?} in {calls:#?}"))
    }

    #[test]
    fn overlay_puts_top_layer_first() {
        assert_eq!(
            overlay_options(&plan(Path::new("/r"))),
            "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"
        );
    }

    #[test]
    fn masks_match_docker() {
        assert!(MASKED.contains(&"/proc/kcore"));
        assert!(READONLY.contains(&"/proc/sysrq-trigger"));
    }

    #[test]
    fn the_tree_goes_private_then_root_then_proc_sys_dev() {
        let d = tempfile::tempdir().unwrap();
        let sys = Recorder::new(d.path());
        mount_all_with(&sys, &plan(d.path()), None).unwrap();
        let m = sys.mounts();
        assert!(
            m[0].starts_with("mount - / - MS_REC | MS_PRIVATE"),
            "{m:#?}"
        );
        assert!(m[1].contains("overlay / overlay") && m[1].contains("lowerdir=/l/top:/l/base"));
        assert!(m[2].starts_with("mount proc /proc proc"));
        assert!(m[3].starts_with("mount sysfs /sys sysfs") && m[3].contains("MS_RDONLY"));
        assert!(m[4].starts_with("mount tmpfs /dev tmpfs"));
        let calls = sys.taken();
        assert!(index(&calls, "/dev/pts devpts") > index(&calls, "mknod /dev/tty"));
        assert!(
            calls.iter().all(|c| !c.contains("MS_REMOUNT")),
            "no --read-only"
        );
    }

    #[test]
    fn dev_gets_dockers_nodes_with_exact_modes_and_its_links() {
        let d = tempfile::tempdir().unwrap();
        let sys = Recorder::new(d.path());
        mount_all_with(&sys, &plan(d.path()), None).unwrap();
        let calls = sys.taken();
        for (name, major, minor) in DEVICES {
            let mk = index(
                &calls,
                &format!("mknod /dev/{name} S_IFCHR 666 {major}:{minor}"),
            );
            let ch = index(&calls, &format!("chmod /dev/{name} 666"));
            assert!(mk < ch, "{name}: mode fixed after mknod");
        }
        assert!(calls.contains(&"symlink /dev/ptmx -> pts/ptmx".to_string()));
        assert!(calls.contains(&"symlink /dev/fd -> /proc/self/fd".to_string()));
        assert!(
            !calls.iter().any(|c| c.starts_with("chown")),
            "not remapped"
        );
        let pts = &calls[index(&calls, "devpts")];
        assert!(
            pts.contains("gid=5") && pts.contains("newinstance"),
            "{pts}"
        );
    }

    #[test]
    fn privileged_leaves_sys_writable() {
        let d = tempfile::tempdir().unwrap();
        let sys = Recorder::new(d.path());
        let mut p = plan(d.path());
        p.privileged = true;
        mount_all_with(&sys, &p, None).unwrap();
        let m = sys.mounts();
        let sysfs = &m[index(&m, "sysfs /sys")];
        assert!(!sysfs.contains("MS_RDONLY"), "{sysfs}");
    }

    #[test]
    fn read_only_remounts_the_root_last_and_only_the_root() {
        let d = tempfile::tempdir().unwrap();
        let sys = Recorder::new(d.path());
        let mut p = plan(d.path());
        p.read_only = true;
        let etc = d.path().join("hostsrc");
        std::fs::write(&etc, "h").unwrap();
        p.etc_files = vec![(etc, "/etc/hostname")];
        mount_all_with(&sys, &p, None).unwrap();
        let m = sys.mounts();
        let last = m.last().unwrap();
        assert!(
            last.starts_with("mount - / - MS_RDONLY | MS_REMOUNT | MS_BIND"),
            "{m:#?}"
        );
        assert_eq!(m.iter().filter(|c| c.contains("MS_REMOUNT")).count(), 1);
    }

    #[test]
    fn a_microvm_mounts_its_root_share_instead_of_an_overlay() {
        let d = tempfile::tempdir().unwrap();
        let sys = Recorder::new(d.path());
        let mut p = plan(d.path());
        p.root_fs = Some(("twinbox-root".into(), "virtiofs".into()));
        mount_all_with(&sys, &p, None).unwrap();
        let m = sys.mounts();
        assert!(m[1].starts_with("mount twinbox-root / virtiofs"), "{m:#?}");
        assert!(!m.iter().any(|c| c.contains("overlay")));
    }

    #[test]
    fn volumes_go_on_before_the_etc_files_and_parents_before_children() {
        let d = tempfile::tempdir().unwrap();
        let sys = Recorder::new(d.path());
        let mut p = plan(d.path());
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let hosts = d.path().join("hostssrc");
        std::fs::write(&hosts, "h").unwrap();
        p.etc_files = vec![(hosts, "/etc/hosts")];
        let vol = |target: &str| PlannedMount {
            source: MountSource::Bind(src.clone()),
            target: target.into(),
            readonly: false,
            copy_up: false,
            kind_volume: true,
        };
        p.mounts = vec![vol("/etc/deep/x"), vol("/etc")];
        mount_all_with(&sys, &p, None).unwrap();
        let m = sys.mounts();
        let etc = index(&m, "/src /etc - MS_BIND | MS_REC");
        let deep = index(&m, "/src /etc/deep/x - MS_BIND | MS_REC");
        let hosts = index(&m, "/hostssrc /etc/hosts - MS_BIND");
        assert!(etc < deep && deep < hosts, "{m:#?}");
    }

    #[test]
    fn a_symlinked_etc_in_the_image_is_followed_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        // The container's /etc points at an absolute path: it means its own /elsewhere.
        std::os::unix::fs::symlink("/elsewhere", root.join("etc")).unwrap();
        let sys = Recorder::new(&root);
        let mut p = plan(&root);
        let src = d.path().join("hostname");
        std::fs::write(&src, "h").unwrap();
        p.etc_files = vec![(src, "/etc/hostname")];
        mount_all_with(&sys, &p, None).unwrap();
        let m = sys.mounts();
        assert!(
            m.iter()
                .any(|c| c.contains(" /elsewhere/hostname - MS_BIND")),
            "{m:#?}"
        );
        assert!(root.join("elsewhere/hostname").exists());
        assert!(!Path::new("/elsewhere").exists());
    }

    #[test]
    fn a_remapped_root_mounts_idmapped_layers_and_owns_dev() {
        let d = tempfile::tempdir().unwrap();
        let sys = Recorder::new(d.path());
        let p = plan(&d.path().join("root"));
        std::fs::create_dir_all(&p.target).unwrap();
        let m = RootIdmap {
            userns: 42,
            staging: d.path().join("idmap"),
            uid: 100000,
            gid: 100000,
            size: 65536,
        };
        mount_all_with(&sys, &p, Some(&m)).unwrap();
        let calls = sys.taken();
        let l0 = index(&calls, "idmap /l/base /idmap/l0 userns=42");
        let ov = index(&calls, "overlay /root overlay");
        assert!(l0 < ov);
        assert!(calls[ov].contains("lowerdir=/") && calls[ov].contains("/idmap/l1:"));
        assert!(calls.contains(&"chown /c/upper 100000:100000".to_string()));
        assert!(calls.contains(&"chown /root/dev/null 100000:100000".to_string()));
        assert!(calls[index(&calls, "devpts")].contains("gid=100005"));
        assert!(calls[index(&calls, "/root/dev/shm")].contains("uid=100000,gid=100000"));
    }

    #[test]
    fn masked_and_read_only_paths_only_where_they_exist() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("proc/acpi")).unwrap();
        std::fs::create_dir_all(r.join("proc/sys")).unwrap();
        std::fs::write(r.join("proc/kcore"), "").unwrap();
        let sys = Recorder::new(r);
        mask_and_protect_with(&sys, r).unwrap();
        assert_eq!(
            sys.mounts(),
            [
                "mount tmpfs /proc/acpi tmpfs MS_RDONLY -",
                "mount /dev/null /proc/kcore - MS_BIND -",
                "mount /proc/sys /proc/sys - MS_BIND | MS_REC -",
                "mount - /proc/sys - MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_REMOUNT | MS_BIND -",
            ]
        );
    }

    #[test]
    fn pivot_detaches_the_old_root() {
        let sys = Recorder::new(Path::new("/nonexistent"));
        pivot_with(&sys, Path::new("/new")).unwrap();
        assert_eq!(
            sys.taken(),
            [
                "chdir /new",
                "pivot_root . .",
                "umount2 . MNT_DETACH",
                "chdir /"
            ]
        );
    }
}
