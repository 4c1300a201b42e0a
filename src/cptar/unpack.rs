//! The receiving side of `cp`: a tar stream written under a destination, each entry
//! created in a directory opened by [`at`]'s rules and replaced, never written
//! through: an existing symlink or hard link at an entry's name is removed first.

use super::{invalid, safe_relative, Side, MAX_DEPTH};
use crate::util::at::{self, Resolve};
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where the entries go: directories are opened as `anchor`/`prefix`/REL under
/// `resolve`.
struct Base {
    anchor: OwnedFd,
    prefix: PathBuf,
    resolve: Resolve,
    side: Side,
}

impl Base {
    fn dir(&self, rel: &Path, create: bool) -> io::Result<OwnedFd> {
        if rel.components().count() > MAX_DEPTH {
            return Err(invalid(format!(
                "{}: deeper than {MAX_DEPTH} levels",
                rel.display()
            )));
        }
        let p = self.prefix.join(rel);
        if create {
            at::ensure_dir(self.anchor.as_fd(), &p, self.resolve)
        } else {
            at::open_dir(self.anchor.as_fd(), &p, self.resolve)
        }
    }
}

/// How the destination was found.
enum Mode {
    /// An existing directory: entries land inside it.
    Into,
    /// The top entry takes this name in the base directory.
    Rename(OsString),
}

fn root_dir() -> io::Result<OwnedFd> {
    Ok(File::open("/")?.into())
}

/// Resolve the destination: an existing directory, or a name in an existing one.
fn destination(side: Side, dest: &str) -> io::Result<(Base, Mode, bool)> {
    let p = Path::new(dest);
    let name = p.file_name().map(|n| n.to_owned());
    let parent = p
        .parent()
        .filter(|x| !x.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match side {
        Side::Container => {
            let root = root_dir()?;
            let exists = at::open(root.as_fd(), p, libc::O_PATH, 0, Resolve::InRoot)
                .and_then(|fd| at::stat_fd(fd.as_fd()))
                .ok();
            if matches!(exists, Some(st) if at::kind(st.st_mode) == libc::S_IFDIR) || name.is_none()
            {
                return Ok((
                    Base {
                        anchor: root,
                        prefix: p.to_path_buf(),
                        resolve: Resolve::InRoot,
                        side,
                    },
                    Mode::Into,
                    true,
                ));
            }
            at::open_dir(root.as_fd(), parent, Resolve::InRoot)
                .map_err(|_| missing_parent(parent))?;
            Ok((
                Base {
                    anchor: root,
                    prefix: parent.to_path_buf(),
                    resolve: Resolve::InRoot,
                    side,
                },
                Mode::Rename(name.unwrap_or_default()),
                exists.is_some(),
            ))
        }
        Side::Host => {
            let meta = std::fs::metadata(p).ok();
            if meta.as_ref().is_some_and(|m| m.is_dir()) || name.is_none() {
                return Ok((
                    Base {
                        anchor: open_host_dir(p)?,
                        prefix: PathBuf::new(),
                        resolve: Resolve::BeneathNoSymlinks,
                        side,
                    },
                    Mode::Into,
                    true,
                ));
            }
            let anchor = open_host_dir(parent).map_err(|_| missing_parent(parent))?;
            Ok((
                Base {
                    anchor,
                    prefix: PathBuf::new(),
                    resolve: Resolve::BeneathNoSymlinks,
                    side,
                },
                Mode::Rename(name.unwrap_or_default()),
                std::fs::symlink_metadata(p).is_ok(),
            ))
        }
    }
}

fn missing_parent(parent: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("destination directory {} does not exist", parent.display()),
    )
}

fn open_host_dir(p: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(p)?
        .into())
}

/// Extract a `pack` stream to `dest` with Docker's `cp` rules. `expect` is the top
/// entry the sender was asked for (`cptar::top_name` of its path): a stream from a
/// container or a guest must hold that and nothing beside it — a directory's entries
/// under it, a single file alone.
pub fn extract(
    side: Side,
    input: &mut dyn Read,
    dest: &str,
    expect: Option<&str>,
) -> io::Result<()> {
    let (mut base, mut mode, dest_exists) = destination(side, dest)?;
    let mut guarded;
    let input: &mut dyn Read = if side == Side::Host {
        guarded = super::guard::Guard::new(input);
        &mut guarded
    } else {
        input
    };
    let mut ar = tar::Archive::new(input);
    let mut first = true;
    let mut top_is_dir = false;
    let mut extracted = std::collections::HashSet::new();
    for entry in ar.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let rel = safe_relative(&raw)
            .ok_or_else(|| invalid(format!("refusing archive entry {}", raw.display())))?;
        let kind = entry.header().entry_type();
        if let Some(want) = expect {
            if first {
                top_is_dir = kind.is_dir();
            }
            if !expected_entry(want, first, top_is_dir, &rel) {
                return Err(invalid(format!(
                    "refusing archive entry {}: not under {want}",
                    raw.display()
                )));
            }
        }
        if std::mem::take(&mut first) {
            if let Mode::Rename(name) = &mode {
                if kind.is_dir() && dest_exists {
                    // Docker: a directory never replaces an existing file.
                    return Err(invalid(format!(
                        "cannot overwrite non-directory {dest} with a directory"
                    )));
                }
                if kind.is_dir() && rel.as_os_str().is_empty() {
                    // `SRC/.` to a new name: that directory is made, the contents go in.
                    let name = name.clone();
                    let parent = base.dir(Path::new(""), false)?;
                    at::mkdir_entry(parent.as_fd(), &name, 0o755)?;
                    base.prefix.push(&name);
                    if base.side == Side::Host {
                        base.anchor = at::open_entry(
                            parent.as_fd(),
                            &name,
                            libc::O_PATH | libc::O_DIRECTORY,
                            0,
                        )?;
                        base.prefix = PathBuf::new();
                    }
                    mode = Mode::Into;
                    continue;
                }
            }
        }
        let rel = renamed(&mode, rel);
        if rel.as_os_str().is_empty() {
            continue;
        }
        let link = if kind.is_hard_link() {
            let l = entry
                .link_name()?
                .ok_or_else(|| invalid(format!("{}: hard link without a target", raw.display())))?;
            Some(hard_link_target(&mode, &l, &raw, &extracted)?)
        } else {
            None
        };
        write_entry(&base, &rel, &mut entry, link.as_deref())
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", raw.display())))?;
        if !kind.is_dir() {
            extracted.insert(rel);
        }
    }
    Ok(())
}

/// Is `rel` an entry a stream asked for `want` may hold? The first entry must be `want`
/// itself (for `.`, the directory's own entry); the rest must lie under it, and only a
/// directory has anything under it.
fn expected_entry(want: &str, first: bool, top_is_dir: bool, rel: &Path) -> bool {
    if first {
        return if want == "." {
            rel.as_os_str().is_empty() && top_is_dir
        } else {
            rel == Path::new(want)
        };
    }
    top_is_dir
        && (want == "."
            || rel.components().next() == Some(std::path::Component::Normal(OsStr::new(want))))
}

/// A hard link's target, checked: relative and inside, renamed as the entries are, and
/// only to a file this stream brought (all `pack` links to) — never to what was at the
/// destination before.
fn hard_link_target(
    mode: &Mode,
    target: &Path,
    raw: &Path,
    extracted: &std::collections::HashSet<PathBuf>,
) -> io::Result<PathBuf> {
    let l = safe_relative(target)
        .ok_or_else(|| invalid(format!("refusing hard link target {}", target.display())))?;
    let l = renamed(mode, l);
    if !extracted.contains(&l) {
        return Err(invalid(format!(
            "refusing hard link {} to {}: not a file of this copy",
            raw.display(),
            l.display()
        )));
    }
    Ok(l)
}

/// Apply the rename rule: the top component becomes the destination's name.
fn renamed(mode: &Mode, rel: PathBuf) -> PathBuf {
    match mode {
        Mode::Into => rel,
        Mode::Rename(new) => {
            let mut comps = rel.components();
            comps.next();
            let rest = comps.as_path();
            if rest.as_os_str().is_empty() {
                PathBuf::from(new)
            } else {
                Path::new(new).join(rest)
            }
        }
    }
}

fn cname(n: &OsStr) -> io::Result<CString> {
    CString::new(n.as_bytes()).map_err(|_| invalid("NUL in a name".into()))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn write_entry(
    base: &Base,
    rel: &Path,
    entry: &mut tar::Entry<'_, &mut dyn Read>,
    link: Option<&Path>,
) -> io::Result<()> {
    let (parent_rel, name) = at::split_last(rel).ok_or_else(|| invalid("empty name".into()))?;
    let dir = base.dir(parent_rel, true)?;
    let dir = dir.as_fd();
    let h = entry.header();
    let kind = h.entry_type();
    let mut perm = h.mode()? & 0o7777;
    if base.side == Side::Host {
        // The archive comes from a container: nothing it sends may grant privileges on
        // the host.
        perm &= 0o1777;
    }
    let mtime = i64::try_from(h.mtime().unwrap_or(0)).unwrap_or(i64::MAX);
    let existing = at::stat_entry(dir, name)?;
    let existing_dir = existing.is_some_and(|st| at::kind(st.st_mode) == libc::S_IFDIR);
    if existing_dir && !kind.is_dir() && base.side == Side::Host {
        // Docker's rule, and no stream from a container deletes a host tree.
        return Err(invalid(
            "cannot overwrite a directory with a non-directory".into(),
        ));
    }
    if existing.is_some() && !(existing_dir && kind.is_dir()) {
        at::remove_entry(dir, name)?;
    }
    let c = cname(name)?;
    if kind.is_dir() {
        at::mkdir_entry(dir, name, 0o700)?;
        if existing_dir && base.side == Side::Host {
            return Ok(()); // a host directory keeps its own mode
        }
        let fd = at::open_entry(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        return fchmod(fd.as_fd(), perm);
    }
    if let Some(target) = link {
        let (tparent, tname) =
            at::split_last(target).ok_or_else(|| invalid("empty link target".into()))?;
        let tdir = base.dir(tparent, false)?;
        let tc = cname(tname)?;
        // SAFETY: both names are NUL-terminated; flags 0: a symlink target is linked
        // itself, never followed.
        return check(unsafe {
            libc::linkat(
                tdir.as_raw_fd(),
                tc.as_ptr(),
                dir.as_raw_fd(),
                c.as_ptr(),
                0,
            )
        });
    }
    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let fd = at::open_entry(
                dir,
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                0o600,
            )?;
            let mut f = File::from(fd);
            copy_keeping_holes(entry, &mut f)?;
            fchmod(f.as_fd(), perm)?;
            set_mtime(f.as_fd(), mtime)
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()?
                .ok_or_else(|| invalid("symlink without a target".into()))?;
            let t = CString::new(target.as_os_str().as_bytes())
                .map_err(|_| invalid("NUL in a symlink".into()))?;
            // SAFETY: both strings are NUL-terminated; symlinkat does not retain them.
            check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) })
        }
        tar::EntryType::Fifo => {
            // SAFETY: c is NUL-terminated; mknodat does not retain it.
            check(unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), libc::S_IFIFO | perm, 0) })
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            if base.side == Side::Host {
                return Err(invalid("device nodes are not created on the host".into()));
            }
            let t = if kind == tar::EntryType::Char {
                libc::S_IFCHR
            } else {
                libc::S_IFBLK
            };
            let dev = libc::makedev(
                h.device_major()?.unwrap_or(0),
                h.device_minor()?.unwrap_or(0),
            );
            // SAFETY: as above.
            check(unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), t | perm, dev) })
        }
        // Metadata-only entries (pax/GNU headers are consumed by the reader).
        _ => Ok(()),
    }
}

/// Copy a file's data, leaving runs of zeros as holes: a sparse file a container made
/// (`truncate -s 8E`) costs the destination no more than it cost the container.
fn copy_keeping_holes(r: &mut dyn Read, f: &mut File) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf[..n].iter().all(|b| *b == 0) {
            // n <= buf.len(), a small buffer.
            f.seek(SeekFrom::Current(
                i64::try_from(n).map_err(io::Error::other)?,
            ))?;
        } else {
            f.write_all(&buf[..n])?;
        }
        len += n as u64;
    }
    f.set_len(len)
}

fn fchmod(fd: BorrowedFd, perm: u32) -> io::Result<()> {
    // SAFETY: fchmod on an fd we hold.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), perm) })
}

fn set_mtime(fd: BorrowedFd, mtime: i64) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: futimens reads two timespecs that live across the call.
    check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_asked_for_one_entry_holds_only_it_and_what_is_under_it() {
        let p = Path::new;
        // A file asked for: that file, alone.
        assert!(expected_entry("app.log", true, false, p("app.log")));
        assert!(!expected_entry("app.log", true, false, p(".ssh")));
        assert!(!expected_entry("app.log", false, false, p("app.log/x")));
        // A directory: its entries under it, nothing beside it.
        assert!(expected_entry("etc", true, true, p("etc")));
        assert!(expected_entry("etc", false, true, p("etc/passwd")));
        assert!(!expected_entry("etc", false, true, p("etcetera/passwd")));
        assert!(!expected_entry(
            "etc",
            false,
            true,
            p(".ssh/authorized_keys")
        ));
        // `SRC/.`: the directory's own entry first, then anything.
        assert!(expected_entry(".", true, true, p("")));
        assert!(!expected_entry(".", true, false, p("")));
        assert!(expected_entry(".", false, true, p("a/b")));
    }

    #[test]
    fn hard_links_only_to_files_of_the_same_stream() {
        let mut brought = std::collections::HashSet::new();
        brought.insert(PathBuf::from("d/a"));
        let raw = Path::new("d/b");
        assert_eq!(
            hard_link_target(&Mode::Into, Path::new("d/a"), raw, &brought).unwrap(),
            PathBuf::from("d/a")
        );
        for bad in ["d/other", "/etc/shadow", "../../etc/shadow"] {
            assert!(
                hard_link_target(&Mode::Into, Path::new(bad), raw, &brought).is_err(),
                "{bad}"
            );
        }
    }
    use crate::cptar::pack;
    use std::fs;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        crate::cptar::raw_tar(entries, 0o4755)
    }

    fn s(p: &Path) -> String {
        p.display().to_string()
    }

    #[test]
    fn file_to_new_name_and_into_dir() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("a.txt");
        fs::write(&src, b"data").unwrap();
        let mut buf = Vec::new();
        pack(Side::Host, &s(&src), &mut buf).unwrap();
        let renamed = d.path().join("b.txt");
        extract(Side::Host, &mut &buf[..], &s(&renamed), Some("a.txt")).unwrap();
        assert_eq!(fs::read(&renamed).unwrap(), b"data");
        let dir = d.path().join("dir");
        fs::create_dir(&dir).unwrap();
        extract(Side::Host, &mut &buf[..], &s(&dir), Some("a.txt")).unwrap();
        assert_eq!(fs::read(dir.join("a.txt")).unwrap(), b"data");
    }

    #[test]
    fn directories_recurse_and_contents_mode() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("tree");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink("sub/f", src.join("link")).unwrap();
        nix::unistd::mkfifo(
            &src.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let mut buf = Vec::new();
        pack(Side::Host, &s(&src), &mut buf).unwrap();
        let dest = d.path().join("copy");
        extract(Side::Host, &mut &buf[..], &s(&dest), Some("tree")).unwrap();
        assert_eq!(fs::read(dest.join("sub/f")).unwrap(), b"x");
        assert_eq!(
            fs::read_link(dest.join("link")).unwrap(),
            Path::new("sub/f")
        );
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::symlink_metadata(dest.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        // SRC/. copies the contents, into a new directory or an existing one.
        let mut buf = Vec::new();
        pack(Side::Host, &format!("{}/.", s(&src)), &mut buf).unwrap();
        let dest2 = d.path().join("contents");
        extract(Side::Host, &mut &buf[..], &s(&dest2), Some(".")).unwrap();
        assert_eq!(fs::read(dest2.join("sub/f")).unwrap(), b"x");
        extract(Side::Host, &mut &buf[..], &s(&dest), Some(".")).unwrap();
        assert!(!dest.join("tree").exists());
    }

    #[test]
    fn missing_parent_and_source_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("a");
        fs::write(&src, b"1").unwrap();
        let mut buf = Vec::new();
        pack(Side::Host, &s(&src), &mut buf).unwrap();
        assert!(extract(
            Side::Host,
            &mut &buf[..],
            &s(&d.path().join("no/such/x")),
            None
        )
        .is_err());
        assert!(pack(Side::Host, &s(&d.path().join("nope")), &mut Vec::new()).is_err());
    }

    #[test]
    fn hostile_archives_cannot_leave_the_destination_on_the_host() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("victim"), b"safe").unwrap();
        let dest = d.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let out = s(&outside);
        let cases: Vec<Vec<u8>> = vec![
            // a symlink, then a file through it
            tar_of(&[
                ("x", tar::EntryType::Symlink, b"", Some(&out)),
                ("x/victim", tar::EntryType::Regular, b"pwned", None),
            ]),
            // a symlink, then a directory entry and a file below it
            tar_of(&[
                ("y", tar::EntryType::Symlink, b"", Some("../outside")),
                ("y/sub/victim", tar::EntryType::Regular, b"pwned", None),
            ]),
            // a hard link to a file outside
            tar_of(&[("h", tar::EntryType::Link, b"", Some("../outside/victim"))]),
            // climbing names
            tar_of(&[("../outside/victim", tar::EntryType::Regular, b"pwned", None)]),
            // a device node
            tar_of(&[("mem", tar::EntryType::Char, b"", None)]),
        ];
        for (i, t) in cases.iter().enumerate() {
            let _ = extract(Side::Host, &mut &t[..], &s(&dest), None);
            assert_eq!(
                fs::read(outside.join("victim")).unwrap(),
                b"safe",
                "case {i}"
            );
            assert_eq!(fs::read_dir(&outside).unwrap().count(), 1, "case {i}");
        }
        assert!(!dest.join("mem").exists());
        // A file that replaces a symlink replaces it, not its target.
        std::os::unix::fs::symlink(outside.join("victim"), dest.join("f")).unwrap();
        extract(
            Side::Host,
            &mut &tar_of(&[("f", tar::EntryType::Regular, b"new", None)])[..],
            &s(&dest),
            Some("f"),
        )
        .unwrap();
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"safe");
        assert_eq!(fs::read(dest.join("f")).unwrap(), b"new");
        // setuid/setgid bits do not reach the host.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(dest.join("f")).unwrap().permissions().mode() & 0o7777,
            0o755
        );
    }

    #[test]
    fn a_stream_holds_what_was_asked_for_and_nothing_beside_it() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("home");
        fs::create_dir_all(dest.join(".ssh")).unwrap();
        fs::write(dest.join(".ssh/authorized_keys"), b"mine").unwrap();
        // Asked for app.log, a guest sends .ssh/authorized_keys beside it.
        let t = tar_of(&[
            ("app.log", tar::EntryType::Regular, b"log", None),
            (
                ".ssh/authorized_keys",
                tar::EntryType::Regular,
                b"theirs",
                None,
            ),
        ]);
        assert!(extract(Side::Host, &mut &t[..], &s(&dest), Some("app.log")).is_err());
        assert_eq!(
            fs::read(dest.join(".ssh/authorized_keys")).unwrap(),
            b"mine"
        );
        let t = tar_of(&[(
            ".ssh/authorized_keys",
            tar::EntryType::Regular,
            b"theirs",
            None,
        )]);
        assert!(extract(Side::Host, &mut &t[..], &s(&dest), Some("app.log")).is_err());
        let t = tar_of(&[
            ("logs", tar::EntryType::Directory, b"", None),
            (
                ".ssh/authorized_keys",
                tar::EntryType::Regular,
                b"theirs",
                None,
            ),
        ]);
        assert!(extract(Side::Host, &mut &t[..], &s(&dest), Some("logs")).is_err());
        assert_eq!(
            fs::read(dest.join(".ssh/authorized_keys")).unwrap(),
            b"mine"
        );
        // A hard link only to a file of the same stream, never to one already there.
        let t = tar_of(&[
            ("logs", tar::EntryType::Directory, b"", None),
            (
                "logs/key",
                tar::EntryType::Link,
                b"",
                Some(".ssh/authorized_keys"),
            ),
        ]);
        assert!(extract(Side::Host, &mut &t[..], &s(&dest), Some("logs")).is_err());
        assert!(!dest.join("logs/key").exists());
        let t = tar_of(&[
            ("logs", tar::EntryType::Directory, b"", None),
            ("logs/a", tar::EntryType::Regular, b"a", None),
            ("logs/b", tar::EntryType::Link, b"", Some("logs/a")),
        ]);
        extract(Side::Host, &mut &t[..], &s(&dest), Some("logs")).unwrap();
        assert_eq!(fs::read(dest.join("logs/b")).unwrap(), b"a");
        // A file never replaces a host directory (Docker refuses it too), and an
        // existing host directory keeps its mode.
        use std::os::unix::fs::PermissionsExt;
        let t = tar_of(&[(".ssh", tar::EntryType::Regular, b"x", None)]);
        assert!(extract(Side::Host, &mut &t[..], &s(&dest), Some(".ssh")).is_err());
        assert!(dest.join(".ssh/authorized_keys").exists());
        fs::set_permissions(dest.join(".ssh"), fs::Permissions::from_mode(0o700)).unwrap();
        let t = tar_of(&[(".ssh", tar::EntryType::Directory, b"", None)]);
        extract(Side::Host, &mut &t[..], &s(&dest), Some(".ssh")).unwrap();
        assert_eq!(
            fs::metadata(dest.join(".ssh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }

    #[test]
    fn runs_of_zeros_become_holes() {
        let d = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 8 << 20];
        data[0] = 1;
        let t = tar_of(&[("sparse", tar::EntryType::Regular, &data, None)]);
        extract(
            Side::Host,
            &mut &t[..],
            &s(&d.path().join("out")),
            Some("sparse"),
        )
        .unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(d.path().join("out")).unwrap();
        assert_eq!(m.len(), 8 << 20);
        assert!(m.blocks() * 512 < 1 << 20, "{} blocks", m.blocks());
    }

    #[test]
    fn packing_does_not_follow_a_directory_swapped_for_a_symlink() {
        // The walker opens each directory with O_NOFOLLOW from its parent: a symlink in
        // the tree is sent as a symlink, never walked.
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir(&src).unwrap();
        std::os::unix::fs::symlink("/etc", src.join("etc")).unwrap();
        let mut buf = Vec::new();
        pack(Side::Host, &s(&src), &mut buf).unwrap();
        let mut ar = tar::Archive::new(&buf[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["src", "src/etc"]);
    }
}
