//! Volumes, bind mounts and tmpfs under the container's root, in its mount namespace
//! before pivot_root. Targets are resolved inside the root — a symlink in the image
//! (`/data -> /etc`) is followed within the container's tree, never out to the host's.

use super::syscall::Syscall;
use super::SetupError;
use nix::mount::MsFlags;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where a mount's filesystem comes from, resolved by the caller.
#[derive(Debug, Clone)]
pub enum MountSource {
    /// A host directory or file, bound in (process containers: volumes and binds).
    Bind(PathBuf),
    /// A filesystem the kernel mounts from `source` (microVMs: a volume's virtio-fs
    /// tag, `virtiofs`).
    Filesystem { source: String, fstype: String },
    Tmpfs {
        size: Option<u64>,
        mode: Option<u32>,
        exec: bool,
    },
}

#[derive(Debug, Clone)]
pub struct PlannedMount {
    pub source: MountSource,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
    /// An empty volume first gets the image's files at `target` (Docker's copy-up).
    pub copy_up: bool,
    /// A twinbox volume (not a host path): a remapped container sees it idmapped.
    pub kind_volume: bool,
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const OPEN_TREE_CLONE: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;

/// Mount `source` at `target` with its ids seen through the namespace `userns`.
pub fn mount_idmapped(source: &Path, target: &Path, userns: RawFd) -> io::Result<()> {
    let src = std::ffi::CString::new(source.as_os_str().as_encoded_bytes())?;
    // SAFETY: a NUL-terminated path; open_tree returns a new descriptor or -1.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32,
        )
    })?;
    // SAFETY: the kernel just returned this descriptor to us.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH, and a mount_attr that
    // lives across the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    let dst = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())?;
    // SAFETY: NUL-terminated paths; the detached tree is attached at `target`.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

fn check(rc: i64) -> io::Result<i64> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn err(step: &str, target: &str, e: impl Into<io::Error>) -> SetupError {
    SetupError::new(format!("{step} {target}"), e)
}

/// `target` inside `root`, symlinks resolved within `root` ("/" and ".." stop there).
pub fn resolve_in(root: &Path, target: &str) -> io::Result<PathBuf> {
    let mut todo: Vec<String> = target
        .split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(String::from)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let p = root.join(cur.join("/")).join(&c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let link = fs::read_link(&p)?;
                let link = link.to_string_lossy();
                if link.starts_with('/') {
                    cur.clear();
                }
                todo.extend(
                    link.split('/')
                        .filter(|c| !c.is_empty())
                        .rev()
                        .map(String::from),
                );
            }
            _ => cur.push(c),
        }
    }
    Ok(root.join(cur.join("/")))
}

fn is_empty_dir(p: &Path) -> bool {
    fs::read_dir(p)
        .map(|mut d| d.all(|e| e.map(|e| e.file_name() == "lost+found").unwrap_or(false)))
        .unwrap_or(false)
}

/// Copy a file's data and keep its holes: only the extents SEEK_DATA finds are
/// written, so a sparse file claiming terabytes (a guest could make one on its volume
/// disk) costs the host no more than it cost the guest.
fn copy_sparse(from: &Path, to: &Path) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::fd::AsRawFd;
    let mut src = fs::File::open(from)?;
    let len = src.metadata()?.len();
    let mut dst = fs::File::create(to)?;
    let mut pos: i64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    while (pos as u64) < len {
        // SAFETY: lseek on a descriptor `src` owns; no memory is passed.
        let data = unsafe { libc::lseek(src.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole up to the end
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(src.as_raw_fd(), data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        src.seek(SeekFrom::Start(data as u64))?;
        dst.seek(SeekFrom::Start(data as u64))?;
        let mut left = (hole - data) as u64;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = src.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            dst.write_all(&buf[..n])?;
            left -= n as u64;
        }
        pos = hole;
    }
    dst.set_len(len)
}

/// Copy a tree with owners, modes, symlinks and times (what an image's directory
/// brings into a new volume). Sockets, fifos and devices are skipped.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    copy_tree_shifted(src, dst, &[], None)
}

/// [`copy_tree`] leaving out the top-level entries named in `skip`.
pub fn copy_tree_except(src: &Path, dst: &Path, skip: &[&str]) -> io::Result<()> {
    copy_tree_shifted(src, dst, skip, None)
}

/// An id as a remapped container shows it (host id `map.uid + n`), back to the id it
/// is stored as on disk under an idmapped mount (`n`); ids outside stay as they are.
fn unshift(id: u32, start: u32, size: u32) -> u32 {
    if id >= start && id - start < size {
        id - start
    } else {
        id
    }
}

/// [`copy_tree_except`], ownership translated back from a remapped container's ids
/// (`shift`: (uid start, gid start, size)) to the ones stored on disk.
fn copy_tree_shifted(
    src: &Path,
    dst: &Path,
    skip: &[&str],
    shift: Option<(u32, u32, u32)>,
) -> io::Result<()> {
    for e in fs::read_dir(src)? {
        let e = e?;
        if skip.iter().any(|s| e.file_name() == *s) {
            continue;
        }
        let from = e.path();
        let to = dst.join(e.file_name());
        let m = fs::symlink_metadata(&from)?;
        let ft = m.file_type();
        if ft.is_dir() {
            fs::create_dir(&to)?;
            copy_tree_shifted(&from, &to, &[], shift)?;
        } else if ft.is_file() {
            copy_sparse(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else {
            continue;
        }
        let (uid, gid) = match shift {
            Some((u, g, size)) => (unshift(m.uid(), u, size), unshift(m.gid(), g, size)),
            None => (m.uid(), m.gid()),
        };
        lchown(&to, Some(uid), Some(gid))?;
        if !ft.is_symlink() {
            fs::set_permissions(&to, fs::Permissions::from_mode(m.mode() & 0o7777))?;
        }
        let times = [
            nix::sys::time::TimeSpec::new(m.atime(), m.atime_nsec()),
            nix::sys::time::TimeSpec::new(m.mtime(), m.mtime_nsec()),
        ];
        nix::sys::stat::utimensat(
            None,
            &to,
            &times[0],
            &times[1],
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(io::Error::from)?;
    }
    Ok(())
}

/// Copy-up into a volume directory other running containers may share: the tree is
/// built beside it (where no container sees it) and its entries renamed in, so a
/// symlink someone plants in the volume meanwhile is never followed.
fn copy_up_aside(from: &Path, volume: &Path, shift: Option<(u32, u32, u32)>) -> io::Result<()> {
    // A random name: containers copying up at once (each pid 1 in its namespace)
    // never share it.
    let parent = volume.parent().unwrap_or(volume);
    let aside = tempfile::Builder::new()
        .prefix("_copyup.")
        .tempdir_in(parent)?
        .keep();
    let r = copy_tree_shifted(from, &aside, &[], shift).and_then(|_| {
        for e in fs::read_dir(&aside)? {
            let e = e?;
            let dest = volume.join(e.file_name());
            if fs::symlink_metadata(&dest).is_err() {
                fs::rename(e.path(), &dest)?;
            }
        }
        Ok(())
    });
    let _ = fs::remove_dir_all(&aside);
    r
}

/// Mount everything in `mounts` under `root`, parents before children (`/run` before
/// `/run/x`, whatever the order given).
/// `idmap` (a remapped container): the user namespace to map volumes through, the
/// host uid/gid owning tmpfs mounts, and where idmapped views are staged.
pub fn mount_all_with(
    sys: &dyn Syscall,
    root: &Path,
    mounts: &[PlannedMount],
    staging: &Path,
    idmap: Option<&super::rootfs::RootIdmap>,
) -> Result<(), SetupError> {
    for (i, m) in mount_order(mounts) {
        let t = m.target.as_str();
        let at = resolve_in(root, t).map_err(|e| err("resolve mount target", t, e))?;
        let file_bind = matches!(&m.source, MountSource::Bind(s) if !s.is_dir());
        if file_bind {
            if let Some(parent) = at.parent() {
                fs::create_dir_all(parent).map_err(|e| err("create mount target", t, e))?;
            }
            if fs::symlink_metadata(&at).is_err() {
                fs::write(&at, b"").map_err(|e| err("create mount target", t, e))?;
            }
        } else {
            fs::create_dir_all(&at).map_err(|e| err("create mount target", t, e))?;
        }
        match &m.source {
            MountSource::Bind(src) => bind(sys, m, i, src, &at, file_bind, idmap)?,
            MountSource::Filesystem { source, fstype } => filesystem(
                sys,
                m,
                &staging.join(format!("vol{i}")),
                source,
                fstype,
                &at,
            )?,
            MountSource::Tmpfs { size, mode, exec } => {
                let ro = if m.readonly {
                    MsFlags::MS_RDONLY
                } else {
                    MsFlags::empty()
                };
                let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | ro;
                if !exec {
                    flags |= MsFlags::MS_NOEXEC;
                }
                let mut data = vec![format!("mode={:o}", mode.unwrap_or(0o1777))];
                if let Some(map) = idmap {
                    data.push(format!("uid={},gid={}", map.uid, map.gid));
                }
                if let Some(s) = size {
                    data.push(format!("size={s}"));
                }
                sys.mount(
                    Some(Path::new("tmpfs")),
                    &at,
                    Some("tmpfs"),
                    flags,
                    Some(&data.join(",")),
                )
                .map_err(|e| err("mount tmpfs at", t, e))?;
            }
        }
    }
    Ok(())
}

/// Parents before children, otherwise in the order given (with each mount's index).
fn mount_order(mounts: &[PlannedMount]) -> Vec<(usize, &PlannedMount)> {
    let mut order: Vec<(usize, &PlannedMount)> = mounts.iter().enumerate().collect();
    order.sort_by_key(|(_, m)| m.target.split('/').filter(|c| !c.is_empty()).count());
    order
}

/// A host path or a volume's directory, bound at `at` (read-only if asked).
fn bind(
    sys: &dyn Syscall,
    m: &PlannedMount,
    i: usize,
    src: &Path,
    at: &Path,
    file_bind: bool,
    idmap: Option<&super::rootfs::RootIdmap>,
) -> Result<(), SetupError> {
    let t = m.target.as_str();
    // A remapped container's image shows host ids: they go back to the volume as the
    // ids its idmapped view stores them as.
    let shift = idmap
        .filter(|_| m.kind_volume)
        .map(|i| (i.uid, i.gid, i.size));
    if m.copy_up && !m.readonly && !file_bind && is_empty_dir(src) {
        copy_up_aside(at, src, shift).map_err(|e| err("copy the image's files into", t, e))?;
    }
    match idmap {
        // A remapped container sees a volume's files with their owners as any other
        // container does: through an idmapped view (the files on disk keep their ids).
        // A host path keeps the host's ids.
        Some(map) if m.kind_volume => {
            let view = map.staging.join(format!("v{i}"));
            fs::create_dir_all(&view).map_err(|e| err("stage", t, e))?;
            sys.mount_idmapped(src, &view, map.userns)
                .map_err(|e| err("idmap", t, e))?;
            sys.mount(Some(&view), at, None, MsFlags::MS_MOVE, None)
                .map_err(|e| err("move the volume to", t, e))?;
        }
        _ => sys
            .mount(
                Some(src),
                at,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| err("bind-mount", t, e))?,
    }
    if m.readonly {
        sys.mount(
            None,
            at,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None,
        )
        .map_err(|e| err("make read-only", t, e))?;
    }
    Ok(())
}

/// A filesystem (a microVM's virtio-fs share): mounted aside first, filled from the
/// image if new, then moved over the target. A read-only share is mounted so from the
/// start (its back end refuses writes too), and nothing is copied into it.
fn filesystem(
    sys: &dyn Syscall,
    m: &PlannedMount,
    stage: &Path,
    source: &str,
    fstype: &str,
    at: &Path,
) -> Result<(), SetupError> {
    let t = m.target.as_str();
    let ro = if m.readonly {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    fs::create_dir_all(stage).map_err(|e| err("create staging for", t, e))?;
    sys.mount(
        Some(Path::new(source)),
        stage,
        Some(fstype),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | ro,
        None,
    )
    .map_err(|e| err("mount the share for", t, e))?;
    if m.copy_up && !m.readonly && is_empty_dir(stage) {
        copy_tree(at, stage).map_err(|e| err("copy the image's files into", t, e))?;
    }
    sys.mount(Some(stage), at, None, MsFlags::MS_MOVE, None)
        .map_err(|e| err("move the volume to", t, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("real/sub")).unwrap();
        std::os::unix::fs::symlink("/etc", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../real", r.join("real/sub/up")).unwrap();
        std::os::unix::fs::symlink("loop2", r.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", r.join("loop2")).unwrap();
        assert_eq!(
            resolve_in(r, "/abs/x").unwrap(),
            r.join("etc/x"),
            "absolute links stay in"
        );
        assert_eq!(
            resolve_in(r, "/real/sub/up/sub").unwrap(),
            r.join("real/sub")
        );
        assert_eq!(resolve_in(r, "/../../x").unwrap(), r.join("x"));
        assert_eq!(resolve_in(r, "/new/dir").unwrap(), r.join("new/dir"));
        assert!(resolve_in(r, "/loop1").is_err());
    }

    #[test]
    fn sparse_files_stay_sparse() {
        use std::io::{Seek, SeekFrom, Write};
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let mut f = fs::File::create(&a).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(1 << 30)).unwrap();
        f.write_all(b"tail").unwrap();
        drop(f);
        copy_sparse(&a, &b).unwrap();
        let m = fs::metadata(&b).unwrap();
        assert_eq!(m.len(), (1 << 30) + 4);
        assert!(
            m.blocks() * 512 < 1 << 20,
            "a 1 GiB hole is not written out"
        );
        let mut g = fs::File::open(&b).unwrap();
        let mut four = [0u8; 4];
        std::io::Read::read_exact(&mut g, &mut four).unwrap();
        assert_eq!(&four, b"head");
        g.seek(SeekFrom::Start(1 << 30)).unwrap();
        std::io::Read::read_exact(&mut g, &mut four).unwrap();
        assert_eq!(&four, b"tail");
        let e = d.path().join("empty");
        fs::write(&e, b"").unwrap();
        copy_sparse(&e, &d.path().join("e2")).unwrap();
        assert_eq!(fs::metadata(d.path().join("e2")).unwrap().len(), 0);
    }

    #[test]
    fn copy_keeps_modes_links_and_times() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        fs::create_dir_all(a.join("dir")).unwrap();
        fs::write(a.join("dir/f"), b"data").unwrap();
        fs::set_permissions(a.join("dir/f"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("dir/f", a.join("link")).unwrap();
        fs::create_dir(&b).unwrap();
        copy_tree(&a, &b).unwrap();
        assert_eq!(fs::read(b.join("dir/f")).unwrap(), b"data");
        assert_eq!(fs::metadata(b.join("dir/f")).unwrap().mode() & 0o777, 0o640);
        assert_eq!(fs::read_link(b.join("link")).unwrap(), Path::new("dir/f"));
        assert_eq!(
            fs::metadata(b.join("dir/f")).unwrap().mtime(),
            fs::metadata(a.join("dir/f")).unwrap().mtime()
        );
        assert!(!is_empty_dir(&d.path().join("b/dir")));
    }
}
