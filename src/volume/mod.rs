//! Volumes: named directories twinbox owns, mounted into containers, outliving them.
//!
//! ```text
//! volumes/<name>/volume.json   name, created, labels, anonymous (atomic writes)
//! volumes/<name>/_data/        the data
//! volumes/.lock                held while volumes are created, removed or claimed
//! ```

pub mod parse;
mod store;
pub mod vm;

pub use store::{Volume, VolumeError, VolumeStore};

use crate::init::mounts::{MountSource, PlannedMount};
use crate::spec::{Mount, MountKind};
use std::path::{Path, PathBuf};

/// A process container's mounts: volumes and binds are host directories bound in.
pub fn plan_process_mounts(root: &Path, mounts: &[Mount]) -> Vec<PlannedMount> {
    mounts
        .iter()
        .map(|m| PlannedMount {
            source: match m.kind {
                MountKind::Volume => MountSource::Bind(VolumeStore::data_dir_in(root, &m.source)),
                MountKind::Bind => MountSource::Bind(PathBuf::from(&m.source)),
                MountKind::Tmpfs => MountSource::Tmpfs {
                    size: m.tmpfs_size,
                    mode: m.tmpfs_mode,
                    exec: m.tmpfs_exec,
                },
            },
            target: m.target.clone(),
            readonly: m.readonly,
            copy_up: m.kind == MountKind::Volume && !m.nocopy,
            kind_volume: m.kind == MountKind::Volume,
        })
        .collect()
}
