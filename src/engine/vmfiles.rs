//! The files a microVM boots from, prepared by the engine so the VMM never touches the
//! image or state stores: guest kernel and agent initramfs. Its root is the same
//! overlay a process container gets, shared over virtio-fs (see `monitor::start`).

use super::{io_err, Engine, EngineError};
use crate::state::VmFiles;
use crate::util::cpio::CpioWriter;
use std::path::{Path, PathBuf};

/// The guest agent binary: $TWINBOX_AGENT, or next to this executable.
pub fn agent_binary() -> Result<PathBuf, EngineError> {
    if let Some(p) = std::env::var_os("TWINBOX_AGENT") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(io_err("cannot find the twinbox binary"))?;
    let p = exe.with_file_name("twinbox-agent");
    if p.exists() {
        Ok(p)
    } else {
        Err(EngineError::Invalid(format!(
            "the guest agent {} is missing: build it with `cargo build --release` (it is built with twinbox)",
            p.display()
        )))
    }
}

/// The agent initramfs (`/init` = the agent), cached by the agent's content.
pub fn agent_initramfs(cache: &Path) -> Result<PathBuf, EngineError> {
    use sha2::Digest;
    let agent = agent_binary()?;
    let data = std::fs::read(&agent).map_err(io_err(format!("cannot read {}", agent.display())))?;
    let key = hex::encode(&sha2::Sha256::digest(&data)[..8]);
    let dir = cache.join("initramfs");
    let out = dir.join(format!("agent-{key}.cpio"));
    if out.exists() {
        return Ok(out);
    }
    std::fs::create_dir_all(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    let tmp = dir.join(format!(".agent-{key}.{}", std::process::id()));
    let f = std::fs::File::create(&tmp).map_err(io_err("cannot write the initramfs"))?;
    let mut w = CpioWriter::new(std::io::BufWriter::new(f));
    let werr = io_err("cannot write the initramfs");
    (|| {
        for d in ["dev", "proc", "sys", "run", "mnt", "tmp"] {
            w.dir(d, 0o755)?;
        }
        w.file("init", 0o755, &data)?;
        w.finish().map(|_| ())
    })()
    .map_err(werr)?;
    std::fs::rename(&tmp, &out).map_err(io_err("cannot write the initramfs"))?;
    Ok(out)
}

impl Engine {
    /// Prepare a VM's files.
    pub(crate) fn prepare_vm(&self) -> Result<VmFiles, EngineError> {
        let cache = crate::paths::default_cache();
        let kernel = crate::paths::guest_kernel(&cache).ok_or_else(|| {
            EngineError::Invalid(
                "no guest kernel for --isolation vm: build it with kernel-config/build.sh (scripts/setup.sh does), or set TWINBOX_KERNEL".into(),
            )
        })?;
        let initrd = agent_initramfs(&cache)?;
        Ok(VmFiles { kernel, initrd })
    }
}
