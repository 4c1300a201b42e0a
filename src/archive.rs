//! `cp` as tar streams, with Docker's rules, used on both sides of the boundary
//! (host, process container, guest agent).
//!
//! The sender packs the source with its basename as the top entry. The receiver:
//! if the destination is an existing directory, the entry lands inside it; otherwise
//! the top entry is renamed to the destination's name in its parent directory.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// Clean a tar path: relative, no `..`, no root. Returns None if it would escape.
pub fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Tar `src` onto `out`, its top entry named like `src`'s last component.
pub fn pack(src: &Path, out: &mut dyn Write) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.display())))?;
    let name = src
        .components()
        .rfind(|c| matches!(c, Component::Normal(_)))
        .map(|c| c.as_os_str().to_owned())
        .unwrap_or_else(|| ".".into());
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    if meta.is_dir() {
        b.append_dir_all(&name, src)?;
    } else {
        b.append_path_with_name(src, &name)?;
    }
    b.finish()
}

/// Extract a `pack` stream to `dest` with Docker's `cp` rules.
pub fn extract(input: &mut dyn Read, dest: &Path) -> io::Result<()> {
    let into_dir = fs::metadata(dest).map(|m| m.is_dir()).unwrap_or(false);
    let (base, rename_to) = if into_dir {
        (dest.to_path_buf(), None)
    } else {
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("/"));
        if !parent.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("destination directory {} does not exist", parent.display()),
            ));
        }
        let name = dest.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "destination has no file name")
        })?;
        (parent.to_path_buf(), Some(PathBuf::from(name)))
    };
    let mut ar = tar::Archive::new(input);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let rel = safe_relative(&raw).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("refusing archive entry {}", raw.display()),
            )
        })?;
        let rel = match &rename_to {
            Some(new) => {
                let mut comps = rel.components();
                comps.next();
                let rest = comps.as_path();
                if rest.as_os_str().is_empty() {
                    new.clone()
                } else {
                    new.join(rest)
                }
            }
            None => rel,
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let target = base.join(&rel);
        if let Some(p) = target.parent() {
            fs::create_dir_all(p)?;
        }
        if let Ok(m) = fs::symlink_metadata(&target) {
            if !(m.is_dir() && entry.header().entry_type().is_dir()) {
                if m.is_dir() {
                    fs::remove_dir_all(&target)?;
                } else {
                    fs::remove_file(&target)?;
                }
            }
        }
        entry.unpack(&target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_to_new_name_and_into_dir() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("a.txt");
        fs::write(&src, b"data").unwrap();
        let mut buf = Vec::new();
        pack(&src, &mut buf).unwrap();

        let renamed = d.path().join("b.txt");
        extract(&mut &buf[..], &renamed).unwrap();
        assert_eq!(fs::read(&renamed).unwrap(), b"data");
        assert!(renamed.is_file());

        let dir = d.path().join("dir");
        fs::create_dir(&dir).unwrap();
        extract(&mut &buf[..], &dir).unwrap();
        assert_eq!(fs::read(dir.join("a.txt")).unwrap(), b"data");
    }

    #[test]
    fn directories_recurse() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("tree");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink("sub/f", src.join("link")).unwrap();
        let mut buf = Vec::new();
        pack(&src, &mut buf).unwrap();
        let dest = d.path().join("copy");
        extract(&mut &buf[..], &dest).unwrap();
        assert_eq!(fs::read(dest.join("sub/f")).unwrap(), b"x");
        assert_eq!(
            fs::read_link(dest.join("link")).unwrap(),
            Path::new("sub/f")
        );
    }

    #[test]
    fn missing_parent_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("a");
        fs::write(&src, b"1").unwrap();
        let mut buf = Vec::new();
        pack(&src, &mut buf).unwrap();
        assert!(extract(&mut &buf[..], &d.path().join("no/such/x")).is_err());
        assert!(pack(&d.path().join("nope"), &mut Vec::new()).is_err());
    }
}
