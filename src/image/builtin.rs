//! The built-in `busybox:latest` image, made from the host's static busybox so a
//! fresh machine with no registry can run something at once.
//!
//! One layer: the binary, a symlink per applet (from `busybox --list-full`), and a
//! minimal /etc/passwd and /etc/group. The layer is deterministic (fixed owners, the
//! binary's mtime everywhere), so the same busybox always gives the same image id.

use super::store::{io_err, Image, ImageError, Store};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder, MediaType, Os,
    RootFsBuilder,
};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming the busybox binary to use instead of the search path.
pub const BUSYBOX_ENV: &str = "TWINBOX_BUSYBOX";
const CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox"];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n";

/// Does `reference` name the built-in image?
pub fn is_builtin(reference: &str) -> bool {
    matches!(
        reference,
        "busybox" | "busybox:latest" | "docker.io/library/busybox:latest" | "library/busybox"
    )
}

fn find_busybox() -> Result<PathBuf, ImageError> {
    if let Ok(p) = std::env::var(BUSYBOX_ENV) {
        return Ok(PathBuf::from(p));
    }
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            ImageError::Builtin(
                "no busybox found at /bin/busybox: install it with `apt-get install busybox-static`"
                    .into(),
            )
        })
}

/// True if the ELF file has no program interpreter (is statically linked).
fn is_static_elf(data: &[u8]) -> bool {
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        o + 4 > data.len()
            || u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]) != 3
    })
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Build the layer tarball (uncompressed) and return it with the busybox version line.
fn build_layer(busybox: &Path) -> Result<(Vec<u8>, String), ImageError> {
    let bin = std::fs::read(busybox).map_err(io_err(busybox))?;
    if !is_static_elf(&bin) {
        return Err(ImageError::Builtin(format!(
            "{} is not statically linked: install busybox-static",
            busybox.display()
        )));
    }
    let mtime = std::fs::metadata(busybox)
        .map_err(io_err(busybox))?
        .mtime()
        .max(0) as u64;
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(io_err(busybox))?;
    if !out.status.success() {
        return Err(ImageError::Builtin(format!(
            "{} --list-full failed",
            busybox.display()
        )));
    }
    let version = Command::new(busybox)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.to_string())
        })
        .unwrap_or_else(|| "BusyBox".into());
    let mut applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != "bin/busybox" && !l.contains(".."))
        .collect();
    applets.sort();
    applets.dedup();

    let mut b = tar::Builder::new(Vec::new());
    let err = |e: std::io::Error| ImageError::Builtin(format!("building the layer: {e}"));
    let dirs = [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o755),
        ("root", 0o700),
        ("sbin", 0o755),
        ("sys", 0o755),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
    ];
    for (d, mode) in dirs {
        let mut h = header(tar::EntryType::Directory, mode, 0, mtime);
        b.append_data(&mut h, format!("{d}/"), &[][..])
            .map_err(err)?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, bin.len() as u64, mtime);
    b.append_data(&mut h, "bin/busybox", &bin[..])
        .map_err(err)?;
    for a in &applets {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0, mtime);
        b.append_link(&mut h, a, "/bin/busybox").map_err(err)?;
    }
    for (name, content) in [("etc/passwd", PASSWD), ("etc/group", GROUP)] {
        let mut h = header(tar::EntryType::Regular, 0o644, content.len() as u64, mtime);
        b.append_data(&mut h, name, content.as_bytes())
            .map_err(err)?;
    }
    let data = b.into_inner().map_err(err)?;
    Ok((data, version))
}

/// Create `busybox:latest` in the store. Callers hold the store lock.
pub fn create(store: &Store) -> Result<(), ImageError> {
    let busybox = find_busybox()?;
    let (layer, version) = build_layer(&busybox)?;
    let diff_id = super::store::sha256_digest(&layer);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&layer)
        .map_err(|e| ImageError::Builtin(e.to_string()))?;
    let compressed = gz
        .finish()
        .map_err(|e| ImageError::Builtin(e.to_string()))?;
    let layer_digest = store.put_blob(&compressed)?;
    let mtime = std::fs::metadata(&busybox)
        .map_err(io_err(&busybox))?
        .mtime();
    let created = chrono::DateTime::from_timestamp(mtime, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let b = |e: oci_spec::OciSpecError| ImageError::Builtin(e.to_string());
    let config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .env(vec![format!("PATH={}", crate::spec::DEFAULT_PATH)])
                .cmd(vec!["sh".to_string()])
                .build()
                .map_err(b)?,
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id])
                .build()
                .map_err(b)?,
        )
        .history(vec![
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!(
                    "twinbox built-in: {} from {} ({} applets), /etc/passwd, /etc/group",
                    version,
                    busybox.display(),
                    "all"
                ))
                .build()
                .map_err(b)?,
            HistoryBuilder::default()
                .created(created)
                .created_by("CMD [\"sh\"]")
                .empty_layer(true)
                .build()
                .map_err(b)?,
        ])
        .build()
        .map_err(b)?;
    let desc = Descriptor::new(
        MediaType::ImageLayerGzip,
        compressed.len() as u64,
        layer_digest.parse::<oci_spec::image::Digest>().map_err(b)?,
    );
    let manifest_digest = store.put_image(&config, vec![desc])?;
    store.tag_manifest(&manifest_digest, Some("busybox:latest"))
}

impl Store {
    /// Like `find`, but creates the built-in busybox image when it is asked for and missing.
    pub fn find_or_builtin(&self, reference: &str) -> Result<Image, ImageError> {
        match self.find(reference) {
            Err(ImageError::NotFound(_)) if is_builtin(reference) => {
                let _l = self.lock()?;
                match self.find(reference) {
                    Err(ImageError::NotFound(_)) => {
                        create(self)?;
                        self.find(reference)
                    }
                    other => other,
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names() {
        assert!(is_builtin("busybox"));
        assert!(is_builtin("busybox:latest"));
        assert!(!is_builtin("busybox:1.36"));
        assert!(!is_builtin("alpine"));
    }

    #[test]
    fn static_detection() {
        // This test binary is linked statically (see .cargo/config.toml).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(is_static_elf(&me));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }
}
