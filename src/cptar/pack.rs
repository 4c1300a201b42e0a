//! The sending side of `cp`: a file or directory tree as a tar stream, walked through
//! open directory descriptors (never by path), so nothing swapped in mid-walk is
//! followed out of the tree.

use super::{contents_only, invalid, Side, MAX_DEPTH};
use crate::util::at::{self, Resolve};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Tar `src` onto `out`, its top entry named like `src`'s last component (`.` for
/// `SRC/.`).
pub fn pack(side: Side, src: &str, out: &mut dyn Write) -> io::Result<()> {
    let path = Path::new(src);
    let (parent, name, top): (OwnedFd, OsString, PathBuf) = if contents_only(src) {
        // The directory itself, opened from its parent by the same rules.
        let dir = open_path(side, path)?;
        (dir, OsString::from("."), PathBuf::from("."))
    } else {
        let name = path
            .file_name()
            .ok_or_else(|| invalid(format!("{src}: not a file or directory name")))?
            .to_owned();
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        let parent = open_path(side, parent.unwrap_or(Path::new(".")))?;
        (parent, name.clone(), PathBuf::from(name))
    };
    let mut p = Packer {
        b: tar::Builder::new(out),
        links: std::collections::HashMap::new(),
    };
    if at::stat_entry(parent.as_fd(), &name)?.is_none() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{src}: no such file or directory"),
        ));
    }
    // Depth-first, one open directory per level.
    let mut stack: Vec<(OwnedFd, PathBuf, std::vec::IntoIter<OsString>)> = Vec::new();
    if let Some(dir) = p.entry(parent.as_fd(), &name, &top)? {
        let names = at::list_dir(dir.as_fd())?;
        stack.push((dir, top, names.into_iter()));
    }
    while let Some((dir, arc, names)) = stack.last_mut() {
        let Some(n) = names.next() else {
            stack.pop();
            continue;
        };
        let child = arc.join(&n);
        if let Some(sub) = p.entry(dir.as_fd(), &n, &child)? {
            if stack.len() >= MAX_DEPTH {
                return Err(invalid(format!(
                    "{src}: the directory tree is deeper than {MAX_DEPTH} levels"
                )));
            }
            let names = at::list_dir(sub.as_fd())?;
            stack.push((sub, child, names.into_iter()));
        }
    }
    p.b.finish()
}

/// Open a directory the user or the container named, as a descriptor.
fn open_path(side: Side, p: &Path) -> io::Result<OwnedFd> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    match side {
        Side::Container => {
            let root = File::open("/")?;
            at::open_dir(root.as_fd(), p, Resolve::InRoot).map_err(named)
        }
        Side::Host => {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY)
                .open(p)
                .map_err(named)?;
            Ok(f.into())
        }
    }
}

use std::os::unix::fs::OpenOptionsExt;

struct Packer<'a> {
    b: tar::Builder<&'a mut dyn Write>,
    /// Files with several names: (device, inode) -> the first name sent. The others go
    /// as hard links, so a million links to one file are not a million copies.
    links: std::collections::HashMap<(u64, u64), PathBuf>,
}

fn header(st: &libc::stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

impl Packer<'_> {
    /// Append one entry of `dir`; a directory comes back open, to be descended into.
    fn entry(&mut self, dir: BorrowedFd, name: &OsStr, arc: &Path) -> io::Result<Option<OwnedFd>> {
        let Some(st) = at::stat_entry(dir, name)? else {
            return Ok(None); // gone since it was listed
        };
        match at::kind(st.st_mode) {
            libc::S_IFDIR => {
                let fd = at::open_entry(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                let st = at::stat_fd(fd.as_fd())?;
                let mut h = header(&st, tar::EntryType::Directory);
                self.b.append_data(&mut h, arc, io::empty())?;
                Ok(Some(fd))
            }
            libc::S_IFREG => {
                // Non-blocking: a FIFO raced into its place must not hang the copy.
                let fd = at::open_entry(
                    dir,
                    name,
                    libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
                    0,
                )?;
                let st = at::stat_fd(fd.as_fd())?;
                if at::kind(st.st_mode) != libc::S_IFREG {
                    return Ok(None);
                }
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        let mut h = header(&st, tar::EntryType::Link);
                        self.b.append_link(&mut h, arc, first)?;
                        return Ok(None);
                    }
                    self.links.insert(key, arc.to_path_buf());
                }
                let mut h = header(&st, tar::EntryType::Regular);
                h.set_size(u64::try_from(st.st_size).unwrap_or(0));
                let data = Exact {
                    inner: File::from(fd),
                    left: u64::try_from(st.st_size).unwrap_or(0),
                };
                self.b.append_data(&mut h, arc, data)?;
                Ok(None)
            }
            libc::S_IFLNK => {
                let target =
                    nix::fcntl::readlinkat(Some(std::os::fd::AsRawFd::as_raw_fd(&dir)), name)
                        .map_err(io::Error::from)?;
                let mut h = header(&st, tar::EntryType::Symlink);
                self.b.append_link(&mut h, arc, &target)?;
                Ok(None)
            }
            k @ (libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK) => {
                let kind = match k {
                    libc::S_IFIFO => tar::EntryType::Fifo,
                    libc::S_IFCHR => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                };
                let mut h = header(&st, kind);
                if k != libc::S_IFIFO {
                    h.set_device_major(libc::major(st.st_rdev))?;
                    h.set_device_minor(libc::minor(st.st_rdev))?;
                }
                self.b.append_data(&mut h, arc, io::empty())?;
                Ok(None)
            }
            // Sockets have no tar form; Docker leaves them out too.
            _ => Ok(None),
        }
    }
}

/// Exactly `left` bytes of a file that may change while it is read: what is missing
/// at its end reads as zeros, what was added is left out (the header is written).
struct Exact {
    inner: File,
    left: u64,
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.left).map_or(buf.len(), |l| buf.len().min(l));
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}
