//! A container's changes as an OCI layer: its overlay upper directory packed as a tar
//! stream, overlay's whiteouts (0/0 character devices) turned into `.wh.<name>`
//! files and opaque directories (`trusted.overlay.opaque=y`) into `.wh..wh..opq`.
//! Used by `commit` for both models (a microVM writes its upper directory on the
//! host through virtio-fs).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let name = std::ffi::CString::new(OPAQUE_XATTR).expect("constant");
    let mut v = [0u8; 4];
    // SAFETY: lgetxattr reads two NUL-terminated strings and writes at most 4 bytes
    // into our buffer.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
    n == 1 && v[0] == b'y'
}

/// A remapped container's writable layer stores its files with host ids
/// (`map.uid + n`): the layer gets the container's own (`n`).
fn unshift(id: u32, start: u32, size: u32) -> u32 {
    if id >= start && id - start < size {
        id - start
    } else {
        id
    }
}

fn header_for(
    m: &fs::Metadata,
    kind: tar::EntryType,
    size: u64,
    map: Option<crate::spec::IdMap>,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(m.mode() & 0o7777);
    let (uid, gid) = match map {
        Some(mp) => (
            unshift(m.uid(), mp.uid, mp.size),
            unshift(m.gid(), mp.gid, mp.size),
        ),
        None => (m.uid(), m.gid()),
    };
    h.set_uid(uid as u64);
    h.set_gid(gid as u64);
    h.set_mtime(m.mtime().max(0) as u64);
    h.set_size(size);
    h
}

/// Pack the upper directory `upper` as an OCI layer onto `out` (`map`: the
/// container was remapped, its files' host ids go back to the container's).
pub fn pack_upper(
    upper: &Path,
    out: &mut dyn Write,
    map: Option<crate::spec::IdMap>,
) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    walk(&mut b, upper, Path::new(""), map)?;
    b.finish()
}

fn walk(
    b: &mut tar::Builder<&mut dyn Write>,
    root: &Path,
    rel: &Path,
    map: Option<crate::spec::IdMap>,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(rel))?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = rel.join(e.file_name());
        let full = root.join(&name);
        let m = fs::symlink_metadata(&full)?;
        if is_whiteout(&m) {
            let wh = rel.join(format!(".wh.{}", e.file_name().to_string_lossy()));
            let mut h = header_for(&m, tar::EntryType::Regular, 0, map);
            h.set_mode(0o644);
            b.append_data(&mut h, &wh, io::empty())?;
        } else if m.is_dir() {
            let mut h = header_for(&m, tar::EntryType::Directory, 0, map);
            b.append_data(&mut h, &name, io::empty())?;
            if is_opaque(&full) {
                let mut h = header_for(&m, tar::EntryType::Regular, 0, map);
                h.set_mode(0o644);
                b.append_data(&mut h, name.join(".wh..wh..opq"), io::empty())?;
            }
            walk(b, root, &name, map)?;
        } else if m.file_type().is_symlink() {
            let target = fs::read_link(&full)?;
            let mut h = header_for(&m, tar::EntryType::Symlink, 0, map);
            b.append_link(&mut h, &name, &target)?;
        } else if m.is_file() {
            let mut h = header_for(&m, tar::EntryType::Regular, m.len(), map);
            b.append_data(&mut h, &name, fs::File::open(&full)?)?;
        } else {
            // Devices, fifos and sockets a container made: kept as they are.
            let kind = if m.file_type().is_char_device() {
                tar::EntryType::Char
            } else if m.file_type().is_block_device() {
                tar::EntryType::Block
            } else if m.file_type().is_fifo() {
                tar::EntryType::Fifo
            } else {
                continue;
            };
            let mut h = header_for(&m, kind, 0, map);
            let dev = m.rdev();
            h.set_device_major(libc::major(dev))?;
            h.set_device_minor(libc::minor(dev))?;
            b.append_data(&mut h, &name, io::empty())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_become_oci_whiteouts() {
        let d = tempfile::tempdir().unwrap();
        let up = d.path();
        fs::create_dir_all(up.join("etc")).unwrap();
        fs::write(up.join("etc/new"), b"x").unwrap();
        std::os::unix::fs::symlink("new", up.join("etc/link")).unwrap();
        let gone =
            std::ffi::CString::new(up.join("etc/gone").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mknod(2) with a path we own (a 0/0 char device: overlay's whiteout).
        let rc = unsafe { libc::mknod(gone.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        let mut out = Vec::new();
        pack_upper(up, &mut out, None).unwrap();
        let mut a = tar::Archive::new(&out[..]);
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.contains(&"etc/new".to_string()), "{names:?}");
        assert!(names.contains(&"etc/link".to_string()), "{names:?}");
        if rc == 0 {
            assert!(names.contains(&"etc/.wh.gone".to_string()), "{names:?}");
        }
    }
}
