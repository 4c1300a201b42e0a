//! Where twinbox keeps things: persistent state (default /var/lib/twinbox) and
//! runtime files (default /run/twinbox).

use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/var/lib/twinbox";
pub const DEFAULT_RUN_ROOT: &str = "/run/twinbox";

#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub run: PathBuf,
}

impl Paths {
    pub fn new(root: &Path, run: &Path) -> Paths {
        Paths {
            root: root.to_path_buf(),
            run: run.to_path_buf(),
        }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("container.log")
    }

    pub fn monitor_log(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("monitor.log")
    }

    /// Runtime directory of one container (control socket, rootfs mount point).
    pub fn run_dir(&self, id: &str) -> PathBuf {
        // Unix socket paths are limited to 108 bytes: key the directory by a short id.
        self.run.join(&id[..id.len().min(16)])
    }

    pub fn control_socket(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("ctl.sock")
    }

    pub fn rootfs_mount(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("rootfs")
    }
}
