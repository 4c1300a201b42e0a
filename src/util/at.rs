//! Path resolution that cannot be steered out of a directory tree.
//!
//! Every lookup starts at an open directory and goes through openat2(2) with
//! `RESOLVE_*` rules; every creation or removal names one entry of a directory that
//! is already open. A container (or a guest) that swaps a path component for a
//! symlink between two steps can at worst make an operation fail: it can never make
//! it land outside the tree.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// How paths are resolved below an anchor directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// The anchor is a root: `..` and absolute symlinks stop at it, symlinks are
    /// followed inside it, magic links (/proc/PID/root, /proc/PID/fd/N) are refused.
    /// For paths inside a container's root filesystem.
    InRoot,
    /// Below the anchor and through no symlink at all. For writing entries of an
    /// archive from elsewhere into a host directory.
    BeneathNoSymlinks,
}

impl Resolve {
    fn flags(self) -> u64 {
        match self {
            Resolve::InRoot => libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
            Resolve::BeneathNoSymlinks => {
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS
            }
        }
    }
}

fn cpath(p: &Path) -> io::Result<CString> {
    let bytes = p.as_os_str().as_bytes();
    let bytes = if bytes.is_empty() { b"." } else { bytes };
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn cname(n: &OsStr) -> io::Result<CString> {
    CString::new(n.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2): open `path` relative to `dir` under `resolve`'s rules.
pub fn open(
    dir: BorrowedFd,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: Resolve,
) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
            mode as u64
        } else {
            0
        },
        resolve: resolve.flags(),
    };
    for _ in 0..1000 {
        // SAFETY: c is NUL-terminated and `how` is a valid open_how; both outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor to us.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        let e = io::Error::last_os_error();
        // EAGAIN: a concurrent rename made the kernel give up on a safe lookup. A
        // container renaming in a loop could make that last: we give up too, after a
        // while.
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        format!("{}: the path kept changing during lookup", path.display()),
    ))
}

/// Open the directory `path` (O_PATH) relative to `dir`.
pub fn open_dir(dir: BorrowedFd, path: &Path, resolve: Resolve) -> io::Result<OwnedFd> {
    open(dir, path, libc::O_PATH | libc::O_DIRECTORY, 0, resolve)
}

/// Open one entry of `dir` without following it if it is a symlink.
pub fn open_entry(dir: BorrowedFd, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cname(name)?;
    // SAFETY: c is NUL-terminated; openat does not retain it.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// lstat of one entry of `dir`; None if it does not exist.
pub fn stat_entry(dir: BorrowedFd, name: &OsStr) -> io::Result<Option<libc::stat>> {
    let c = cname(name)?;
    // SAFETY: stat is plain old data; zeroed is valid and fstatat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated and st lives across the call.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        return Ok(Some(st));
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::NotFound {
        Ok(None)
    } else {
        Err(e)
    }
}

/// fstat of an open descriptor (O_PATH ones too).
pub fn stat_fd(fd: BorrowedFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain old data; zeroed is valid and fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st lives across the call.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// The type bits of a mode.
pub fn kind(mode: u32) -> u32 {
    mode & libc::S_IFMT
}

/// mkdirat(2) of one entry; an existing directory is fine.
pub fn mkdir_entry(dir: BorrowedFd, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cname(name)?;
    // SAFETY: c is NUL-terminated; mkdirat does not retain it.
    match check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) }) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Open the directory `path` below `anchor`, creating missing components (mode 0755).
/// Components that exist are resolved under `resolve`; created ones are opened without
/// following anything, so a symlink raced into their place makes this fail.
pub fn ensure_dir(anchor: BorrowedFd, path: &Path, resolve: Resolve) -> io::Result<OwnedFd> {
    match open_dir(anchor, path, resolve) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    // Component by component: each prefix that exists is resolved from the anchor
    // under `resolve` (`..` and symlinks with it, so an absolute symlink means the
    // anchor's root), each component missing is made in the directory before it and
    // opened without following anything.
    let mut prefix = PathBuf::from(if path.is_absolute() { "/" } else { "." });
    let mut cur = open_dir(anchor, &prefix, resolve)?;
    for c in path.components() {
        let name = match c {
            Component::Normal(n) => n,
            Component::ParentDir => OsStr::new(".."),
            _ => continue,
        };
        prefix.push(name);
        cur = match open_dir(anchor, &prefix, resolve) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && c != Component::ParentDir => {
                mkdir_entry(cur.as_fd(), name, 0o755)?;
                open_entry(cur.as_fd(), name, libc::O_PATH | libc::O_DIRECTORY, 0)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(cur)
}

/// Remove one entry of `dir` whatever it is; a directory with everything in it, never
/// following a symlink. Missing is fine.
pub fn remove_entry(dir: BorrowedFd, name: &OsStr) -> io::Result<()> {
    let Some(st) = stat_entry(dir, name)? else {
        return Ok(());
    };
    let c = cname(name)?;
    if kind(st.st_mode) == libc::S_IFDIR {
        let sub = open_entry(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        for child in list_dir(sub.as_fd())? {
            remove_entry(sub.as_fd(), &child)?;
        }
        // SAFETY: c is NUL-terminated; unlinkat does not retain it.
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })?;
    } else {
        // SAFETY: as above.
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) })?;
    }
    Ok(())
}

/// Names in an open directory (without `.` and `..`), sorted.
pub fn list_dir(dir: BorrowedFd) -> io::Result<Vec<std::ffi::OsString>> {
    // A fresh descriptor for the directory stream: Dir takes ownership and closes it.
    let fd = open_entry(dir, OsStr::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut d =
        nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(fd)).map_err(io::Error::from)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(io::Error::from)?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        out.push(std::ffi::OsString::from(OsStr::from_bytes(n)));
    }
    out.sort();
    Ok(out)
}

/// Split a relative path into its parent and last component.
pub fn split_last(p: &Path) -> Option<(&Path, &OsStr)> {
    let name = p.file_name()?;
    Some((p.parent().unwrap_or(Path::new("")), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirfd(p: &Path) -> OwnedFd {
        std::fs::File::open(p).unwrap().into()
    }

    #[test]
    fn in_root_clamps_dotdot_and_absolute_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(d.path().join("outside"), b"host").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        let r = dirfd(&root);
        let etc = open_dir(r.as_fd(), Path::new("abs"), Resolve::InRoot).unwrap();
        assert_eq!(
            stat_fd(etc.as_fd()).unwrap().st_ino,
            std::fs::metadata(root.join("etc"))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap()
        );
        // `up` resolves to the root itself, never above it.
        let up = open_dir(r.as_fd(), Path::new("up"), Resolve::InRoot).unwrap();
        assert_eq!(
            stat_fd(up.as_fd()).unwrap().st_ino,
            stat_fd(r.as_fd()).unwrap().st_ino
        );
        assert!(open(
            r.as_fd(),
            Path::new("up/outside"),
            libc::O_RDONLY,
            0,
            Resolve::InRoot
        )
        .is_err());
    }

    #[test]
    fn magic_links_are_refused() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/proc/self/root", d.path().join("magic")).unwrap();
        let r = dirfd(d.path());
        // Under InRoot "/proc" is the tree's own (missing) /proc; beneath a real /proc
        // the magic link itself must be refused.
        let proc_ = dirfd(Path::new("/proc"));
        let e = open_dir(proc_.as_fd(), Path::new("self/root"), Resolve::InRoot).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        assert!(open_dir(r.as_fd(), Path::new("magic/etc"), Resolve::InRoot).is_err());
    }

    #[test]
    fn beneath_refuses_any_symlink() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", d.path().join("link")).unwrap();
        let r = dirfd(d.path());
        assert!(open_dir(r.as_fd(), Path::new("real"), Resolve::BeneathNoSymlinks).is_ok());
        assert!(open_dir(r.as_fd(), Path::new("link"), Resolve::BeneathNoSymlinks).is_err());
        assert!(ensure_dir(r.as_fd(), Path::new("link/x"), Resolve::BeneathNoSymlinks).is_err());
        assert!(!d.path().join("real/x").exists());
    }

    #[test]
    fn ensure_dir_creates_and_remove_entry_removes() {
        let d = tempfile::tempdir().unwrap();
        let r = dirfd(d.path());
        ensure_dir(r.as_fd(), Path::new("a/b/c"), Resolve::BeneathNoSymlinks).unwrap();
        assert!(d.path().join("a/b/c").is_dir());
        std::fs::write(d.path().join("a/b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("a/b/l")).unwrap();
        remove_entry(r.as_fd(), OsStr::new("a")).unwrap();
        assert!(!d.path().join("a").exists());
        assert!(Path::new("/etc").exists());
        remove_entry(r.as_fd(), OsStr::new("missing")).unwrap();
    }
}
