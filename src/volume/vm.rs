//! Volumes and bind mounts of a microVM: each directory is shared live with the guest
//! over virtio-fs (its own virtiofsd, read-only when the mount is), so a microVM, a
//! process container and other microVMs on one volume see each other's writes while
//! they run. Nothing is copied in at start or back at exit, and the host never mounts
//! anything the guest wrote.

use super::VolumeStore;
use crate::microvm::virtiofsd::ShareSpec;
use crate::spec::{Mount, MountKind};
use std::path::{Path, PathBuf};

/// The most shares a microVM takes (its virtio-mmio IRQs are few).
pub const MAX_SHARES: usize = 12;

/// The mounts shared over virtio-fs, in order (tmpfs is the guest's own).
pub fn shared_mounts(mounts: &[Mount]) -> impl Iterator<Item = &Mount> {
    mounts.iter().filter(|m| m.kind != MountKind::Tmpfs)
}

/// The virtio-fs tag of the `k`-th shared mount.
pub fn share_tag(k: usize) -> String {
    format!("twinbox-vol{k}")
}

fn source_dir(root: &Path, m: &Mount) -> PathBuf {
    match m.kind {
        MountKind::Volume => VolumeStore::data_dir_in(root, &m.source),
        _ => PathBuf::from(&m.source),
    }
}

/// What the guest's shares are: one per volume or bind mount, in order.
pub fn shares(root: &Path, mounts: &[Mount]) -> Vec<ShareSpec> {
    shared_mounts(mounts)
        .enumerate()
        .map(|(k, m)| ShareSpec {
            tag: share_tag(k),
            dir: source_dir(root, m),
            read_only: m.readonly,
            overlay: None,
            mknod: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_and_binds_are_shared_in_order_and_tmpfs_is_not() {
        let m = |kind, source: &str, readonly| Mount {
            kind,
            source: source.into(),
            target: "/t".into(),
            readonly,
            anonymous: false,
            nocopy: false,
            tmpfs_size: None,
            tmpfs_mode: None,
            tmpfs_exec: false,
        };
        let mounts = vec![
            m(MountKind::Tmpfs, "", false),
            m(MountKind::Volume, "data", false),
            m(MountKind::Bind, "/srv/web", true),
        ];
        let s = shares(Path::new("/var/lib/twinbox"), &mounts);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].tag, "twinbox-vol0");
        assert_eq!(
            s[0].dir,
            VolumeStore::data_dir_in(Path::new("/var/lib/twinbox"), "data")
        );
        assert!(!s[0].read_only);
        assert_eq!(s[1].tag, "twinbox-vol1");
        assert_eq!(s[1].dir, PathBuf::from("/srv/web"));
        assert!(s[1].read_only);
    }
}
