//! `cp` with a container that is not running, in either model: both keep the
//! container's root as the same host overlay (image layers + its writable layer; a
//! microVM's is shared into the guest over virtio-fs while it runs), so a helper — this
//! binary as `cp-root` — mounts that overlay in a private mount namespace of its own,
//! chroots into it, and packs or unpacks exactly as inside a running container (paths
//! resolved in the container's root, symlinks never followed out of it). Nothing is
//! mounted on the host, and nothing the guest wrote is parsed by the host kernel but
//! plain files in a directory.

use super::{io_err, Engine, EngineError};
use crate::state::ContainerRecord;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The helper's side: mount `opts` on `dir` privately, chroot, copy.
pub fn helper(dir: &Path, opts: &str, path: &str, into: bool) -> std::io::Result<()> {
    use nix::mount::{mount, MsFlags};
    crate::util::fs::private_mount_namespace(nix::sched::CloneFlags::empty())?;
    let flags = if into {
        MsFlags::empty()
    } else {
        MsFlags::MS_RDONLY
    };
    mount(Some("overlay"), dir, Some("overlay"), flags, Some(opts))?;
    nix::unistd::chroot(dir)?;
    std::env::set_current_dir("/")?;
    if into {
        crate::cptar::extract(
            crate::cptar::Side::Container,
            &mut std::io::stdin().lock(),
            path,
            None,
        )
    } else {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        crate::cptar::pack(crate::cptar::Side::Container, path, &mut out)?;
        out.flush()
    }
}

/// A running `cp-root` helper, and the directory it mounts on.
pub(crate) struct CpHelper {
    pub child: std::process::Child,
    _mnt: tempfile::TempDir,
}

impl Engine {
    /// Start the helper for `path` of stopped container `rec`: it reads a tar stream
    /// on its stdin (`into`) or writes one on its stdout.
    pub(crate) fn cp_helper(
        &self,
        rec: &ContainerRecord,
        path: &str,
        into: bool,
    ) -> Result<CpHelper, EngineError> {
        if into && rec.spec.security.userns.is_some() {
            return Err(EngineError::Conflict(format!(
                "container {} is stopped and runs with --userns remap: start it to copy files into it (its files' owners are shifted as it runs)",
                rec.name
            )));
        }
        let dir = self.paths.container_dir(&rec.id);
        let mut lower: Vec<PathBuf> = rec.layers.iter().map(PathBuf::from).collect();
        let opts = if into {
            crate::init::rootfs::overlay_options_of(&lower, &dir.join("upper"), &dir.join("work"))
        } else {
            // Out: the upper directory as the top read-only layer (its whiteouts
            // apply), no work directory: a start meanwhile gets its own overlay
            // undisturbed.
            lower.push(dir.join("upper"));
            let l: Vec<String> = lower
                .iter()
                .rev()
                .map(|p| p.display().to_string())
                .collect();
            format!("lowerdir={}", l.join(":"))
        };
        let mnt = tempfile::Builder::new()
            .prefix("cp")
            .tempdir_in(self.images.tmp_dir())
            .map_err(io_err("temporary directory"))?;
        let me = std::env::current_exe().map_err(io_err("own executable"))?;
        let mut cmd = Command::new(me);
        cmd.arg("cp-root");
        if into {
            cmd.arg("--into");
        }
        cmd.arg("--")
            .arg(mnt.path())
            .arg(&opts)
            .arg(path)
            .stdin(if into { Stdio::piped() } else { Stdio::null() })
            .stdout(if into { Stdio::null() } else { Stdio::piped() })
            .stderr(Stdio::piped());
        let child = cmd.spawn().map_err(io_err("cp helper"))?;
        Ok(CpHelper { child, _mnt: mnt })
    }

    /// Wait for the helper; its own error (one line) if it failed.
    pub(crate) fn cp_finish(
        &self,
        rec: &ContainerRecord,
        path: &str,
        h: CpHelper,
    ) -> Result<(), EngineError> {
        let CpHelper { child, _mnt } = h;
        let o = child.wait_with_output().map_err(io_err("cp helper"))?;
        if o.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&o.stderr);
        let line = err.lines().last().unwrap_or("the helper failed").trim();
        Err(EngineError::Invalid(format!(
            "copying {}:{path}: {}",
            rec.name,
            line.trim_start_matches("twinbox: ")
        )))
    }
}
