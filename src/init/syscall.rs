//! The system calls that build a container's filesystem view, behind one small trait:
//! [`Linux`] makes them; the tests' recorder writes them down, so the order of mounts,
//! their flags and options are unit-tested without root, in milliseconds.

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

/// What `rootfs` and `mounts` ask of the kernel.
pub trait Syscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    fn mknod(&self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> nix::Result<()>;
    fn chmod(&self, path: &Path, mode: Mode) -> nix::Result<()>;
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> nix::Result<()>;
    fn symlink(&self, target: &str, link: &Path) -> io::Result<()>;
    /// An idmapped view of `source` (through user namespace `userns`) at `target`.
    fn mount_idmapped(&self, source: &Path, target: &Path, userns: RawFd) -> io::Result<()>;
    fn chdir(&self, path: &Path) -> nix::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
}

/// The real kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

impl Syscall for Linux {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn mknod(&self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> nix::Result<()> {
        nix::sys::stat::mknod(path, kind, mode, dev)
    }

    fn chmod(&self, path: &Path, mode: Mode) -> nix::Result<()> {
        nix::sys::stat::fchmodat(
            None,
            path,
            mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> nix::Result<()> {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn mount_idmapped(&self, source: &Path, target: &Path, userns: RawFd) -> io::Result<()> {
        super::mounts::mount_idmapped(source, target, userns)
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }
}

/// A recording [`Syscall`] for tests: every call as one line, in order; nothing done.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct Recorder {
    pub calls: std::cell::RefCell<Vec<String>>,
    /// Paths are shown relative to this (the test's temporary root).
    pub root: std::path::PathBuf,
}

#[cfg(test)]
impl Recorder {
    pub fn new(root: &Path) -> Recorder {
        Recorder {
            calls: Default::default(),
            root: root.to_path_buf(),
        }
    }

    fn show(&self, p: &Path) -> String {
        match p.strip_prefix(&self.root) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => p.display().to_string(),
        }
    }

    /// `MsFlags(MS_BIND | MS_REC)` as `MS_BIND | MS_REC`.
    fn bare(debug: String) -> String {
        match (debug.find('('), debug.ends_with(')')) {
            (Some(i), true) => debug[i + 1..debug.len() - 1].to_string(),
            _ => debug,
        }
    }

    fn log(&self, s: String) {
        self.calls.borrow_mut().push(s);
    }

    /// The calls so far.
    pub fn taken(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    /// The mount calls only.
    pub fn mounts(&self) -> Vec<String> {
        self.taken()
            .into_iter()
            .filter(|c| c.starts_with("mount "))
            .collect()
    }
}

#[cfg(test)]
impl Syscall for Recorder {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.log(format!(
            "mount {} {} {} {} {}",
            source.map(|s| self.show(s)).unwrap_or_else(|| "-".into()),
            self.show(target),
            fstype.unwrap_or("-"),
            Self::bare(format!("{flags:?}")),
            data.unwrap_or("-")
        ));
        Ok(())
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        self.log(format!(
            "umount2 {} {}",
            self.show(target),
            Self::bare(format!("{flags:?}"))
        ));
        Ok(())
    }

    fn mknod(&self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> nix::Result<()> {
        self.log(format!(
            "mknod {} {} {:o} {}:{}",
            self.show(path),
            Self::bare(format!("{kind:?}")),
            mode.bits(),
            nix::sys::stat::major(dev),
            nix::sys::stat::minor(dev)
        ));
        Ok(())
    }

    fn chmod(&self, path: &Path, mode: Mode) -> nix::Result<()> {
        self.log(format!("chmod {} {:o}", self.show(path), mode.bits()));
        Ok(())
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> nix::Result<()> {
        self.log(format!("chown {} {uid}:{gid}", self.show(path)));
        Ok(())
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        self.log(format!("symlink {} -> {target}", self.show(link)));
        Ok(())
    }

    fn mount_idmapped(&self, source: &Path, target: &Path, userns: RawFd) -> io::Result<()> {
        self.log(format!(
            "idmap {} {} userns={userns}",
            self.show(source),
            self.show(target)
        ));
        Ok(())
    }

    fn chdir(&self, path: &Path) -> nix::Result<()> {
        self.log(format!("chdir {}", self.show(path)));
        Ok(())
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        self.log(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ));
        Ok(())
    }
}
