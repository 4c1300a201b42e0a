//! `diff`: what a container changed, from its overlay upper directory (both models
//! keep one on the host; a microVM writes it through virtio-fs). Docker's letters: `A`
//! added, `C` changed (a directory holding a change, too), `D` deleted (overlay's
//! whiteout, a 0/0 character device).
//!
//! The upper directory belongs to the container, which may be running and swapping a
//! directory for a symlink while this walks: every directory is opened relative to its
//! parent's descriptor with O_NOFOLLOW, so the walk never leaves the upper directory.

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Added,
    Changed,
    Deleted,
}

impl Change {
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Changed => 'C',
            Change::Deleted => 'D',
        }
    }
}

/// The changes in `upper` over `lowers` (the image's layer directories), sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> std::io::Result<Vec<(Change, String)>> {
    let dir = Dir::open(
        upper,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    walk(dir, "", lowers, 0, &mut out)?;
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn in_lower(lowers: &[PathBuf], rel: &str) -> bool {
    lowers
        .iter()
        .any(|l| std::fs::symlink_metadata(l.join(rel.trim_start_matches('/'))).is_ok())
}

fn walk(
    mut dir: Dir,
    prefix: &str,
    lowers: &[PathBuf],
    depth: usize,
    out: &mut Vec<(Change, String)>,
) -> std::io::Result<()> {
    if depth > crate::cptar::MAX_DEPTH {
        return Err(std::io::Error::other(format!(
            "{prefix}: deeper than {} levels",
            crate::cptar::MAX_DEPTH
        )));
    }
    let fd = dir.as_raw_fd();
    let mut subdirs = Vec::new();
    for e in dir.iter() {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        let st = match fstatat(Some(fd), e.file_name(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Gone since it was listed (a running container).
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let rel = format!("{prefix}/{name}");
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if kind == SFlag::S_IFCHR && st.st_rdev == 0 {
            out.push((Change::Deleted, rel));
            continue;
        }
        let change = if in_lower(lowers, &rel) {
            Change::Changed
        } else {
            Change::Added
        };
        out.push((change, rel.clone()));
        if kind == SFlag::S_IFDIR {
            subdirs.push((e.file_name().to_owned(), rel, change));
        }
    }
    for (name, rel, change) in subdirs {
        let sub = Dir::openat(
            Some(fd),
            name.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        match sub {
            Ok(sub) => {
                // Below an added directory everything is added: no lower to ask.
                let lowers: &[PathBuf] = if change == Change::Added { &[] } else { lowers };
                walk(sub, &rel, lowers, depth + 1, out)?
            }
            // Replaced by something else since it was listed (a running container).
            Err(nix::errno::Errno::ENOTDIR) | Err(nix::errno::Errno::ELOOP) => {}
            Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn added_changed_deleted_as_docker_prints_them() {
        let d = tempfile::tempdir().unwrap();
        let (lower, upper) = (d.path().join("l"), d.path().join("u"));
        fs::create_dir_all(lower.join("etc")).unwrap();
        fs::write(lower.join("etc/passwd"), b"x").unwrap();
        fs::write(lower.join("gone"), b"x").unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("etc/passwd"), b"y").unwrap();
        fs::write(upper.join("etc/new"), b"y").unwrap();
        fs::create_dir_all(upper.join("srv/a/b")).unwrap();
        fs::write(upper.join("srv/a/b/f"), b"y").unwrap();
        // a whiteout needs CAP_MKNOD: root only
        let root = nix::unistd::geteuid().is_root();
        if root {
            nix::sys::stat::mknod(
                &upper.join("gone"),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0),
                0,
            )
            .unwrap();
        }
        let c: Vec<String> = changes(&upper, &[lower])
            .unwrap()
            .iter()
            .map(|(k, p)| format!("{} {p}", k.letter()))
            .collect();
        let mut want = vec![
            "C /etc",
            "A /etc/new",
            "C /etc/passwd",
            "A /srv",
            "A /srv/a",
            "A /srv/a/b",
            "A /srv/a/b/f",
        ];
        if root {
            want.insert(3, "D /gone");
        }
        assert_eq!(c, want);
    }

    #[test]
    fn a_symlink_in_the_upper_dir_is_listed_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let (lower, upper, outside) = (d.path().join("l"), d.path().join("u"), d.path().join("o"));
        fs::create_dir_all(&lower).unwrap();
        fs::create_dir_all(&upper).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(&outside, upper.join("link")).unwrap();
        let c = changes(&upper, &[lower]).unwrap();
        assert_eq!(c, vec![(Change::Added, "/link".to_string())]);
    }

    #[test]
    fn a_very_deep_tree_is_refused_not_overflowed() {
        let d = tempfile::tempdir().unwrap();
        let upper = d.path().join("u");
        let mut p = upper.clone();
        for _ in 0..(crate::cptar::MAX_DEPTH + 2) {
            p.push("d");
        }
        fs::create_dir_all(&p).unwrap();
        let e = changes(&upper, &[]).unwrap_err();
        assert!(e.to_string().contains("deeper than"), "{e}");
    }
}
