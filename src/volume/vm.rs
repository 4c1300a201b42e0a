//! Volumes and bind mounts of a microVM. A guest shares no filesystem with the host,
//! so each one travels as a disk: at start its directory is copied into a sparse ext4
//! image (virtio-blk, /dev/vdc, /dev/vdd, … in mount order after the image and scratch
//! disks), and at exit a read-write volume's disk is copied back into the volume —
//! into a fresh directory swapped in whole, so a failed copy leaves the old data.
//! Read-only mounts (and binds, which may only be read-only) are never written back.

use super::{VolumeError, VolumeStore};
use crate::spec::{Mount, MountKind};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The most volume disks a microVM gets (its virtio-mmio IRQs are few).
pub const MAX_DISKS: usize = 8;

/// One mount's disk.
pub struct VolumeDisk {
    pub path: PathBuf,
    pub read_only: bool,
}

/// The mounts that travel as disks, in order (tmpfs is the guest's own).
pub fn disk_mounts(mounts: &[Mount]) -> impl Iterator<Item = &Mount> {
    mounts.iter().filter(|m| m.kind != MountKind::Tmpfs)
}

/// The guest device of the `k`-th disk mount.
pub fn guest_device(k: usize) -> String {
    format!("/dev/vd{}", (b'c' + k as u8) as char)
}

fn source_dir(root: &Path, m: &Mount) -> PathBuf {
    match m.kind {
        MountKind::Volume => VolumeStore::data_dir_in(root, &m.source),
        _ => PathBuf::from(&m.source),
    }
}

fn disk_path(container_dir: &Path, k: usize) -> PathBuf {
    container_dir.join(format!("volume-{k}.ext4"))
}

/// Whether disks of an earlier run are still there (a copy-back that failed, or a
/// monitor that died before it): their data must go back before anything else.
pub fn pending(container_dir: &Path) -> bool {
    std::fs::read_dir(container_dir)
        .map(|d| {
            d.flatten().any(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with("volume-") && n.ends_with(".ext4")
            })
        })
        .unwrap_or(false)
}

/// Make the disks for a start.
pub fn build_disks(
    root: &Path,
    container_dir: &Path,
    mounts: &[Mount],
) -> Result<Vec<VolumeDisk>, VolumeError> {
    let mut out = Vec::new();
    for (k, m) in disk_mounts(mounts).enumerate() {
        let src = source_dir(root, m);
        // Room for the data twice over and 256 MiB to grow; sparse, so free.
        let size = (crate::util::fs::disk_usage(&src) * 2 + (256 << 20)).max(1 << 30);
        let path = disk_path(container_dir, k);
        crate::image::ext4::dir_disk(&path, &src, size)
            .map_err(|e| VolumeError::Invalid(format!("the disk for {}: {e}", m.target)))?;
        out.push(VolumeDisk {
            path,
            read_only: m.readonly,
        });
    }
    Ok(out)
}

/// After the microVM stopped: read-write volumes get their disk's contents back
/// (anonymous ones skipped when `skip_anonymous`: they are about to go), then every
/// disk is deleted. A disk that could not be copied back is kept, and named in the
/// error.
pub fn write_back(
    root: &Path,
    container_dir: &Path,
    mounts: &[Mount],
    skip_anonymous: bool,
) -> Result<(), VolumeError> {
    // Under the store's lock: a container starting meanwhile (this one's record
    // already says exited) waits for the data instead of seeing it half-copied.
    let vs = VolumeStore::open(root)?;
    let _l = vs.lock()?;
    let mut failed = Vec::new();
    for (k, m) in disk_mounts(mounts).enumerate() {
        let disk = disk_path(container_dir, k);
        if !disk.exists() {
            continue;
        }
        let wanted = m.kind == MountKind::Volume && !m.readonly && !(skip_anonymous && m.anonymous);
        if wanted {
            if let Err(e) = copy_back(&disk, &source_dir(root, m), container_dir) {
                failed.push(format!("{} ({}): {e}", m.source, disk.display()));
                continue;
            }
        }
        let _ = std::fs::remove_file(&disk);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(VolumeError::Invalid(format!(
            "volume data not written back, its disk kept: {}",
            failed.join("; ")
        )))
    }
}

fn copy_back(disk: &Path, data: &Path, work: &Path) -> Result<(), String> {
    let new = data.with_file_name("_data.new");
    let old = data.with_file_name("_data.old");
    let _ = crate::util::fs::remove_dir_all_if_exists(&new);
    let mnt = tempfile::Builder::new()
        .prefix("volume-mnt")
        .tempdir_in(work)
        .map_err(|e| e.to_string())?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    // The disk is mounted in a private mount namespace (gone with the process) and
    // read by this very binary. Read-write: the guest powers off without unmounting,
    // and the kernel replays the journal (the disk is deleted after).
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"set -e; mount -o loop "$1" "$2"; exec "$3" copy-tree "$2" "$4""#)
        .arg("sh")
        .arg(disk)
        .arg(mnt.path())
        .arg(&me)
        .arg(&new)
        .output()
        .map_err(|e| format!("unshare (util-linux): {e}"))?;
    if !o.status.success() {
        let _ = crate::util::fs::remove_dir_all_if_exists(&new);
        return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
    }
    let _ = crate::util::fs::remove_dir_all_if_exists(&old);
    std::fs::rename(data, &old).map_err(|e| e.to_string())?;
    std::fs::rename(&new, data).map_err(|e| e.to_string())?;
    let _ = crate::util::fs::remove_dir_all_if_exists(&old);
    Ok(())
}

/// `copy-tree SRC DST` (internal): DST made and filled with SRC's tree, the
/// filesystem's own lost+found left out.
pub fn copy_tree_cmd(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir(dst)?;
    let meta = std::fs::metadata(src)?;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::os::unix::fs::chown(dst, Some(meta.uid()), Some(meta.gid()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    crate::launch::mounts::copy_tree_except(src, dst, &["lost+found"])
}
