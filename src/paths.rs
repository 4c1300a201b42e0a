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

/// The state root's subtrees (each holds something a host user must not reach: image
/// layers and containers' writable layers with their setuid files, records with
/// `-e SECRET=…`, logs, volumes).
const SUBTREES: &[&str] = &["containers", "images", "volumes", "networks", "cache"];

impl Paths {
    /// Create the state and runtime roots, owner-only (0700), and make the known
    /// subtrees owner-only too — an older install's 0755 ones included. Nothing below
    /// either root is reachable by another host user, as with Docker's 0710/0700.
    pub fn prepare(&self) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let owner_only = || std::fs::Permissions::from_mode(0o700);
        for d in [&self.root, &self.run] {
            std::fs::create_dir_all(d)?;
            std::fs::set_permissions(d, owner_only())?;
        }
        for name in SUBTREES {
            let d = self.root.join(name);
            match std::fs::symlink_metadata(&d) {
                Ok(m) if m.is_dir() && m.permissions().mode() & 0o077 == 0 => {}
                Ok(m) if m.is_dir() => std::fs::set_permissions(&d, owner_only())?,
                _ => {
                    std::fs::create_dir_all(&d)?;
                    std::fs::set_permissions(&d, owner_only())?;
                }
            }
        }
        Ok(())
    }

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

    /// Compiled seccomp filters, by profile and capabilities.
    pub fn seccomp_cache(&self) -> PathBuf {
        self.root.join("cache").join("seccomp")
    }

    pub fn rootfs_mount(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("rootfs")
    }
}

/// The default cache directory for expensive artifacts.
pub fn default_cache() -> PathBuf {
    std::env::var_os("TWINBOX_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/twinbox"))
}

/// Find the guest kernel: $TWINBOX_KERNEL, or the newest build in the cache.
pub fn guest_kernel(cache: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TWINBOX_KERNEL") {
        return Some(PathBuf::from(p));
    }
    let p = cache.join("kernel/current/vmlinux");
    p.exists().then_some(p)
}
