//! Read-only ext4 images of an image's root filesystem, for the vm backend's first disk.
//! Built once per image id with `mkfs.ext4 -d` (e2fsprogs), without mounting anything
//! on the host for single-layer images; multi-layer images are merged through a
//! read-only overlay mounted in a private mount namespace of the mkfs process.

use super::store::{io_err, Image, ImageError, Store};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bytes a tree occupies, rounded per file to 4 KiB blocks.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            total += m.len().div_ceil(4096) * 4096 + 4096;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

fn mkfs_ext4() -> Result<PathBuf, ImageError> {
    ["/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| ImageError::Builtin("mkfs.ext4 not found: install e2fsprogs".into()))
}

/// Make (once) and return the read-only ext4 image of `image`.
pub fn rootfs_image(store: &Store, image: &Image) -> Result<PathBuf, ImageError> {
    let out = store.ext4_path(image);
    if out.exists() {
        return Ok(out);
    }
    let layers = store.layer_dirs(image)?;
    let _l = store.lock()?;
    if out.exists() {
        return Ok(out);
    }
    let size: u64 = layers.iter().map(|l| tree_size(l)).sum();
    let size_mib = (size + size / 4) / (1 << 20) + 16;
    let tmp = store
        .tmp_dir()
        .join(format!("rootfs-{}.ext4", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut cmd = Command::new(mkfs_ext4()?);
    cmd.args([
        "-q",
        "-F",
        "-t",
        "ext4",
        "-L",
        "twinbox-image",
        "-O",
        "^has_journal",
    ])
    .args(["-E", "root_owner=0:0"])
    .arg("-d");
    let merged;
    if layers.len() == 1 {
        cmd.arg(&layers[0]);
    } else {
        // Merge the layers (whiteouts applied) through an overlay that only the mkfs
        // process sees.
        merged = store
            .tmp_dir()
            .join(format!("merge-{}", std::process::id()));
        std::fs::create_dir_all(&merged).map_err(io_err(&merged))?;
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        let opts = std::ffi::CString::new(format!("lowerdir={}", lower.join(":")))
            .map_err(|_| ImageError::Builtin("layer path with a NUL byte".into()))?;
        let target = std::ffi::CString::new(merged.display().to_string())
            .map_err(|_| ImageError::Builtin("path with a NUL byte".into()))?;
        cmd.arg(&merged);
        // SAFETY: between fork and exec: unshare and mount are async-signal-safe
        // syscalls; the CStrings were allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::mount(
                    c"overlay".as_ptr(),
                    target.as_ptr(),
                    c"overlay".as_ptr(),
                    libc::MS_RDONLY,
                    opts.as_ptr() as *const libc::c_void,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.arg(&tmp).arg(format!("{size_mib}M"));
    let o = cmd.output().map_err(io_err(&tmp))?;
    if !o.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(ImageError::Builtin(format!(
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    std::fs::rename(&tmp, &out).map_err(io_err(&out))?;
    Ok(out)
}

/// A sparse, empty ext4 disk of `size` bytes (a container's writable layer in a VM).
pub fn scratch_disk(path: &Path, size: u64) -> Result<(), ImageError> {
    sparse_ext4(path, size, "twinbox-scratch", None)
}

/// A sparse ext4 disk of `size` bytes holding a copy of the directory `from` (owners,
/// modes, links kept): a volume or bind mount as a microVM sees it.
pub fn dir_disk(path: &Path, from: &Path, size: u64) -> Result<(), ImageError> {
    sparse_ext4(path, size, "twinbox-volume", Some(from))
}

fn sparse_ext4(path: &Path, size: u64, label: &str, from: Option<&Path>) -> Result<(), ImageError> {
    let f = std::fs::File::create(path).map_err(io_err(path))?;
    f.set_len(size).map_err(io_err(path))?;
    drop(f);
    let mut cmd = Command::new(mkfs_ext4()?);
    cmd.args(["-q", "-F", "-t", "ext4", "-L", label])
        .args(["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"]);
    if let Some(d) = from {
        cmd.arg("-d").arg(d);
    }
    let o = cmd.arg(path).output().map_err(io_err(path))?;
    if !o.status.success() {
        let _ = std::fs::remove_file(path);
        return Err(ImageError::Builtin(format!(
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(())
}
