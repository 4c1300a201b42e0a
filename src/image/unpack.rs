//! Unpacking a layer tarball into a directory that overlayfs can use as a lower layer.
//!
//! Safety against hostile tarballs: no entry may land outside the destination
//! (absolute paths and `..` are refused, and no entry may be written through a symlink
//! or hard-link to a target outside). OCI whiteouts become overlayfs whiteouts:
//! `.wh.NAME` a 0:0 character device, `.wh..wh..opq` the `trusted.overlay.opaque` xattr.

use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum UnpackError {
    #[error("layer entry {0:?} would land outside the root filesystem")]
    Escape(String),
    #[error("layer entry {0:?} goes through a symbolic link")]
    ThroughSymlink(String),
    #[error("layer entry {0:?} is more than {MAX_DEPTH} directories deep")]
    TooDeep(String),
    #[error("the layer has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("reading the layer tarball")]
    Read(#[source] io::Error),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Deepest path a layer may hold (real images stay far below; a deeper tree only
/// makes every later lookup in it slower).
pub const MAX_DEPTH: usize = crate::cptar::MAX_DEPTH;
/// Most entries one layer may hold (a Debian base layer has ~10,000).
pub const MAX_ENTRIES: usize = 2_000_000;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

pub use crate::cptar::safe_relative;

/// Fail if any existing ancestor of `rel` under `root` is a symlink.
fn check_parents(root: &Path, rel: &Path) -> Result<(), UnpackError> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::ThroughSymlink(rel.display().to_string()))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn mknod_whiteout(path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: c is a valid NUL-terminated path; mknod does not retain it.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_opaque(dir: &Path) -> io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: valid C strings and a 1-byte value buffer that outlives the call.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            name.as_ptr(),
            b"y".as_ptr() as *const libc::c_void,
            1,
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unpack an uncompressed layer stream into `dest`; returns the stream's
/// `sha256:` digest (the layer's diff id).
pub fn unpack_layer<R: Read>(reader: R, dest: &Path) -> Result<String, UnpackError> {
    let mut hr = HashingReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    {
        let mut ar = tar::Archive::new(&mut hr);
        ar.set_preserve_permissions(true);
        ar.set_preserve_ownerships(true);
        ar.set_unpack_xattrs(true);
        ar.set_overwrite(true);
        for (n, entry) in ar.entries().map_err(UnpackError::Read)?.enumerate() {
            if n >= MAX_ENTRIES {
                return Err(UnpackError::TooManyEntries);
            }
            let mut entry = entry.map_err(UnpackError::Read)?;
            let raw = entry.path().map_err(UnpackError::Read)?.into_owned();
            let rel = safe_relative(&raw)
                .ok_or_else(|| UnpackError::Escape(raw.display().to_string()))?;
            if rel.as_os_str().is_empty() {
                continue;
            }
            if rel.components().count() > MAX_DEPTH {
                return Err(UnpackError::TooDeep(raw.display().to_string()));
            }
            check_parents(dest, &rel)?;
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let parent = rel
                .parent()
                .map(|p| dest.join(p))
                .unwrap_or(dest.to_path_buf());
            if name == OPAQUE {
                std::fs::create_dir_all(&parent).map_err(write_err(&parent))?;
                set_opaque(&parent).map_err(write_err(&parent))?;
                continue;
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                std::fs::create_dir_all(&parent).map_err(write_err(&parent))?;
                let target = parent.join(hidden);
                let _ = std::fs::remove_file(&target);
                mknod_whiteout(&target).map_err(write_err(&target))?;
                continue;
            }
            if entry.header().entry_type().is_hard_link() {
                let link = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| UnpackError::Escape(raw.display().to_string()))?;
                let target = safe_relative(&link)
                    .ok_or_else(|| UnpackError::Escape(link.display().to_string()))?;
                check_parents(dest, &target)?;
                if let Ok(m) = std::fs::symlink_metadata(dest.join(&target)) {
                    if m.file_type().is_symlink() {
                        return Err(UnpackError::ThroughSymlink(link.display().to_string()));
                    }
                }
            }
            let full = dest.join(&rel);
            if let Ok(m) = std::fs::symlink_metadata(&full) {
                // Replacing: a non-directory over anything, or anything over a non-directory.
                let is_dir_entry = entry.header().entry_type().is_dir();
                if !(m.is_dir() && is_dir_entry) {
                    if m.is_dir() {
                        std::fs::remove_dir_all(&full).map_err(write_err(&full))?;
                    } else {
                        std::fs::remove_file(&full).map_err(write_err(&full))?;
                    }
                }
            }
            let ok = entry.unpack_in(dest).map_err(|e| UnpackError::Write {
                path: full.clone(),
                source: e,
            })?;
            if !ok {
                return Err(UnpackError::Escape(raw.display().to_string()));
            }
        }
    }
    io::copy(&mut hr, &mut io::sink()).map_err(UnpackError::Read)?;
    Ok(format!("sha256:{}", hex::encode(hr.hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        crate::cptar::raw_tar(entries, 0o755)
    }

    #[test]
    fn unpacks_and_hashes() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_with(&[
            ("bin/", tar::EntryType::Directory, b"", None),
            ("bin/hello", tar::EntryType::Regular, b"hi", None),
            ("bin/link", tar::EntryType::Symlink, b"", Some("hello")),
        ]);
        let digest = unpack_layer(&t[..], d.path()).unwrap();
        assert_eq!(digest, crate::image::store::sha256_digest(&t));
        assert_eq!(std::fs::read(d.path().join("bin/hello")).unwrap(), b"hi");
        assert_eq!(
            std::fs::read_link(d.path().join("bin/link")).unwrap(),
            Path::new("hello")
        );
    }

    #[test]
    fn refuses_dotdot() {
        let d = tempfile::tempdir().unwrap();
        let t = tar_with(&[("../evil", tar::EntryType::Regular, b"x", None)]);
        assert!(matches!(
            unpack_layer(&t[..], &d.path().join("root")),
            Err(UnpackError::Escape(_))
        ));
        assert!(!d.path().join("evil").exists());
    }

    #[test]
    fn refuses_write_through_symlink() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let t = tar_with(&[
            (
                "esc",
                tar::EntryType::Symlink,
                b"",
                Some(outside.to_str().unwrap()),
            ),
            ("esc/pwned", tar::EntryType::Regular, b"x", None),
        ]);
        assert!(matches!(
            unpack_layer(&t[..], &root),
            Err(UnpackError::ThroughSymlink(_))
        ));
        assert!(!outside.join("pwned").exists());
    }

    #[test]
    fn refuses_hardlink_escape() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let t = tar_with(&[("h", tar::EntryType::Link, b"", Some("../../etc/shadow"))]);
        assert!(unpack_layer(&t[..], &root).is_err());
    }

    #[test]
    fn refuses_a_tree_deeper_than_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let deep = "d/".repeat(MAX_DEPTH + 1);
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, &deep, io::empty()).unwrap();
        let t = b.into_inner().unwrap();
        assert!(matches!(
            unpack_layer(&t[..], d.path()),
            Err(UnpackError::TooDeep(_))
        ));
    }

    #[test]
    fn safe_relative_rules() {
        assert_eq!(safe_relative(Path::new("./a/b")).unwrap(), Path::new("a/b"));
        assert!(safe_relative(Path::new("/etc")).is_none());
        assert!(safe_relative(Path::new("a/../../b")).is_none());
    }
}
