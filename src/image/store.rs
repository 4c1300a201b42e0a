//! Blobs, manifests, configs, the tag index, and unpacked layers on disk.
//!
//! ```text
//! images/blobs/sha256/<hex>     every blob: layers (gzip tar), configs, manifests
//! images/index.json             manifest digest -> tags (atomic writes, flock)
//! images/layers/<diffid hex>/   a layer unpacked once, shared read-only (overlay lower)
//! ```

use super::reference::Reference;
use super::unpack;
use crate::util::fs::{atomic_write, remove_dir_all_if_exists, Lock};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest, MediaType};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ImageError {
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("{0}")]
    BadReference(String),
    #[error("image store I/O at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid OCI document {what}")]
    Oci {
        what: String,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    DigestMismatch { digest: String, actual: String },
    #[error("{0}")]
    Registry(String),
    #[error("reading {what}")]
    Read {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("invalid image archive: {0}")]
    BadArchive(String),
    #[error("{0}")]
    Conflict(String),
    #[error("cannot create the built-in busybox image: {0}")]
    Builtin(String),
    #[error("the image index {path} is damaged ({reason}): `twinbox image prune` rebuilds it from the stored images")]
    IndexDamaged { path: PathBuf, reason: String },
    #[error("image {name} is damaged ({reason}): `twinbox rmi {name}` removes it")]
    Damaged { name: String, reason: String },
    #[error("cannot unpack layer {digest}")]
    Unpack {
        digest: String,
        #[source]
        source: unpack::UnpackError,
    },
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn oci_err(what: &str) -> impl FnOnce(oci_spec::OciSpecError) -> ImageError + '_ {
    move |source| ImageError::Oci {
        what: what.to_string(),
        source,
    }
}

/// sha256 of `data` as `sha256:<hex>`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A layer's uncompressed tar, whatever its compression — gzip, zstd or none — told
/// by its first bytes rather than by the media type a producer chose.
pub fn decompressed<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    use std::io::BufRead;
    let mut br = io::BufReader::new(r);
    let head = br.fill_buf()?.to_vec();
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::GzDecoder::new(br)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = ruzstd::StreamingDecoder::new(br)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
        Ok(Box::new(d))
    } else {
        Ok(Box::new(br))
    }
}

/// The pid in a temp name the store's writers make: `blob-<pid>-<random>` or
/// `unpack-<diffid>-<pid>`.
fn writer_pid(name: &str) -> Option<u32> {
    if let Some(rest) = name.strip_prefix("blob-") {
        rest.split('-').next()?.parse().ok()
    } else if let Some(rest) = name.strip_prefix("unpack-") {
        rest.rsplit('-').next()?.parse().ok()
    } else {
        None
    }
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

#[derive(Serialize, Deserialize, Default, Debug, Clone)]
struct IndexEntry {
    tags: Vec<String>,
    added: String,
}

#[derive(Serialize, Deserialize, Default, Debug)]
struct Index {
    /// manifest digest -> entry
    images: BTreeMap<String, IndexEntry>,
}

/// A resolved image.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image id: the digest of its config.
    pub id: String,
    pub manifest_digest: String,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    pub tags: Vec<String>,
}

impl Image {
    /// Sum of compressed layer sizes.
    pub fn size(&self) -> u64 {
        self.manifest.layers().iter().map(|l| l.size()).sum()
    }

    pub fn short_id(&self) -> &str {
        let h = hex_of(&self.id);
        &h[..12.min(h.len())]
    }

    pub fn diff_ids(&self) -> &[String] {
        self.config.rootfs().diff_ids()
    }
}

/// The image store under `<root>/images`.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store, ImageError> {
        let dir = root.join("images");
        for sub in ["blobs/sha256", "layers", "tmp", "locks"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let s = Store { dir };
        s.sweep_dead_writers();
        Ok(s)
    }

    /// Remove temp blobs and unpack directories whose writer died (killed mid-pull,
    /// mid-unpack): each is named by its writer's pid.
    pub fn sweep_dead_writers(&self) {
        let Ok(rd) = fs::read_dir(self.tmp_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = writer_pid(&name) {
                if !Path::new("/proc").join(pid.to_string()).exists() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        remove_dir_all_if_exists(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                }
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn lock(&self) -> Result<Lock, ImageError> {
        let p = self.dir.join("images.lock");
        Lock::exclusive(&p).map_err(io_err(&p))
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex_of(digest))
    }

    /// Store a blob; returns its digest. Idempotent.
    pub fn put_blob(&self, data: &[u8]) -> Result<String, ImageError> {
        let digest = sha256_digest(data);
        let p = self.blob_path(&digest);
        if !p.exists() {
            atomic_write(&p, data).map_err(io_err(&p))?;
        }
        Ok(digest)
    }

    /// Read a blob and verify its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest);
        let data = fs::read(&p).map_err(io_err(&p))?;
        let actual = sha256_digest(&data);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                digest: digest.to_string(),
                actual,
            });
        }
        Ok(data)
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    fn read_index(&self) -> Result<Index, ImageError> {
        let p = self.index_path();
        let parse = |p: &Path| -> Result<Option<Index>, String> {
            match fs::read(p) {
                Ok(d) => serde_json::from_slice(&d)
                    .map(Some)
                    .map_err(|e| e.to_string()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        };
        match parse(&p) {
            Ok(Some(idx)) => Ok(idx),
            Ok(None) => Ok(Index::default()),
            // The copy written with it stands in for a damaged index.
            Err(reason) => match parse(&self.index_copy_path()) {
                Ok(Some(idx)) => Ok(idx),
                _ => Err(ImageError::IndexDamaged { path: p, reason }),
            },
        }
    }

    fn index_copy_path(&self) -> PathBuf {
        self.dir.join("index.json.copy")
    }

    fn write_index(&self, idx: &Index) -> Result<(), ImageError> {
        let data = serde_json::to_vec_pretty(idx).expect("index serializes");
        for p in [self.index_path(), self.index_copy_path()] {
            atomic_write(&p, &data).map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// Rebuild a damaged index from the manifests among the stored blobs (their tags
    /// are lost: the images come back untagged). The damaged file is kept beside it.
    /// Returns how many images were found, or None if the index was fine. Callers hold
    /// the lock.
    pub fn repair_index(&self) -> Result<Option<usize>, ImageError> {
        if self.read_index().is_ok() {
            return Ok(None);
        }
        let mut idx = Index::default();
        let dir = self.dir.join("blobs/sha256");
        for e in fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
            let digest = format!("sha256:{}", e.file_name().to_string_lossy());
            let is_manifest = fs::read(e.path())
                .ok()
                .and_then(|d| ImageManifest::from_reader(&d[..]).ok())
                .is_some_and(|m| m.config().media_type() == &MediaType::ImageConfig);
            if is_manifest && self.load_image(&digest, vec![]).is_ok() {
                idx.images.insert(
                    digest,
                    IndexEntry {
                        tags: vec![],
                        added: chrono::Utc::now().to_rfc3339(),
                    },
                );
            }
        }
        let p = self.index_path();
        let _ = fs::rename(&p, self.dir.join("index.json.damaged"));
        let n = idx.images.len();
        self.write_index(&idx)?;
        Ok(Some(n))
    }

    /// Images in the index that cannot be loaded (a blob missing or corrupt): their
    /// name (a tag, or the manifest digest) and why.
    pub fn damaged(&self) -> Result<Vec<(String, String)>, ImageError> {
        let idx = self.read_index()?;
        Ok(idx
            .images
            .iter()
            .filter_map(|(digest, e)| {
                self.load_image(digest, e.tags.clone()).err().map(|err| {
                    let name = e.tags.first().cloned().unwrap_or_else(|| digest.clone());
                    (name, crate::util::error_chain(&err))
                })
            })
            .collect())
    }

    /// Take a damaged image out of the index by a tag or its manifest digest (`rmi`);
    /// its blobs go with the next `gc`. Returns the tags it had. Callers hold the lock.
    pub fn forget_damaged(&self, reference: &str) -> Result<Vec<String>, ImageError> {
        let mut idx = self.read_index()?;
        let tagged = Reference::parse(reference).ok().and_then(|r| r.tagged());
        let key = idx
            .images
            .iter()
            .find(|(d, e)| *d == reference || tagged.as_ref().is_some_and(|t| e.tags.contains(t)))
            .map(|(d, _)| d.clone())
            .ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        let gone = idx.images.remove(&key).map(|e| e.tags).unwrap_or_default();
        self.write_index(&idx)?;
        Ok(gone)
    }

    /// Remove every image that cannot be loaded from the index; their names. Callers
    /// hold the lock.
    pub fn forget_all_damaged(&self) -> Result<Vec<String>, ImageError> {
        let mut names = Vec::new();
        for (name, _) in self.damaged()? {
            self.forget_damaged(&name)?;
            names.push(name);
        }
        Ok(names)
    }

    /// Record a stored manifest under `tag` (moving the tag off any other image).
    /// Callers hold the lock.
    pub fn tag_manifest(&self, manifest_digest: &str, tag: Option<&str>) -> Result<(), ImageError> {
        let mut idx = self.read_index()?;
        if let Some(t) = tag {
            for e in idx.images.values_mut() {
                e.tags.retain(|x| x != t);
            }
        }
        let e = idx
            .images
            .entry(manifest_digest.to_string())
            .or_insert_with(|| IndexEntry {
                tags: vec![],
                added: chrono::Utc::now().to_rfc3339(),
            });
        if let Some(t) = tag {
            e.tags.push(t.to_string());
        }
        self.write_index(&idx)
    }

    /// Take `tag` off whatever image has it. Returns whether one had it. Callers hold
    /// the lock.
    pub fn untag(&self, tag: &str) -> Result<bool, ImageError> {
        let mut idx = self.read_index()?;
        let mut found = false;
        for e in idx.images.values_mut() {
            let n = e.tags.len();
            e.tags.retain(|t| t != tag);
            found |= e.tags.len() != n;
        }
        if found {
            self.write_index(&idx)?;
        }
        Ok(found)
    }

    /// Forget an image (every tag of it). Its blobs stay until `gc`. Callers hold the
    /// lock.
    pub fn remove_manifest(&self, manifest_digest: &str) -> Result<(), ImageError> {
        let mut idx = self.read_index()?;
        if idx.images.remove(manifest_digest).is_some() {
            self.write_index(&idx)?;
        }
        Ok(())
    }

    /// When an image entered the store (RFC 3339).
    pub fn added(&self, manifest_digest: &str) -> Option<String> {
        self.read_index()
            .ok()?
            .images
            .get(manifest_digest)
            .map(|e| e.added.clone())
    }

    /// Delete what no image in the index references and `in_use` (unpacked layer dirs
    /// containers still use) does not name: blobs, unpacked layers, and the ext4
    /// images older versions made for microVMs. A layer shared by two images stays
    /// until the last one goes.
    /// Returns the bytes freed. Callers hold the lock.
    pub fn gc(&self, in_use: &std::collections::HashSet<PathBuf>) -> Result<u64, ImageError> {
        let mut blobs = std::collections::HashSet::new();
        let mut layers = std::collections::HashSet::new();
        for img in self.list()? {
            blobs.insert(hex_of(&img.manifest_digest).to_string());
            blobs.insert(hex_of(&img.id).to_string());
            for l in img.manifest.layers() {
                blobs.insert(hex_of(l.digest().as_ref()).to_string());
            }
            for d in img.diff_ids() {
                layers.insert(hex_of(d).to_string());
            }
        }
        let mut freed = 0u64;
        let mut sweep = |dir: PathBuf, keep: &dyn Fn(&Path) -> bool| -> Result<(), ImageError> {
            for e in fs::read_dir(&dir).map_err(io_err(&dir))?.flatten() {
                let p = e.path();
                if keep(&p) || in_use.contains(&p) {
                    continue;
                }
                freed += crate::util::fs::disk_usage(&p);
                if p.is_dir() {
                    remove_dir_all_if_exists(&p).map_err(io_err(&p))?;
                } else {
                    fs::remove_file(&p).map_err(io_err(&p))?;
                }
            }
            Ok(())
        };
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        sweep(self.dir.join("blobs/sha256"), &|p| blobs.contains(&name(p)))?;
        sweep(self.dir.join("layers"), &|p| layers.contains(&name(p)))?;
        sweep(self.dir.join("locks"), &|p| {
            layers.contains(name(p).trim_end_matches(".lock"))
        })?;
        let old_ext4 = self.dir.join("rootfs");
        if old_ext4.exists() {
            sweep(old_ext4, &|_| false)?;
        }
        // Temp blobs and unpack dirs of processes that died mid-way (kill -9, a crash):
        // named by their writer's pid, kept while it lives.
        sweep(self.tmp_dir(), &|p| match writer_pid(&name(p)) {
            Some(pid) => Path::new("/proc").join(pid.to_string()).exists(),
            None => true,
        })?;
        Ok(freed)
    }

    /// Store config + manifest for layers already stored; returns the manifest digest.
    pub fn put_image(
        &self,
        config: &ImageConfiguration,
        layers: Vec<Descriptor>,
    ) -> Result<String, ImageError> {
        let config_json = config.to_string().map_err(oci_err("image config"))?;
        let config_digest = self.put_blob(config_json.as_bytes())?;
        let config_desc = Descriptor::new(
            MediaType::ImageConfig,
            config_json.len() as u64,
            config_digest
                .parse::<oci_spec::image::Digest>()
                .map_err(oci_err("config digest"))?,
        );
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(layers)
            .build()
            .map_err(oci_err("manifest"))?;
        let manifest_json = manifest.to_string().map_err(oci_err("manifest"))?;
        self.put_blob(manifest_json.as_bytes())
    }

    fn load_image(&self, manifest_digest: &str, tags: Vec<String>) -> Result<Image, ImageError> {
        let m = self.read_blob(manifest_digest)?;
        let manifest = ImageManifest::from_reader(&m[..]).map_err(oci_err(manifest_digest))?;
        let config_digest = manifest.config().digest().to_string();
        let c = self.read_blob(&config_digest)?;
        let config = ImageConfiguration::from_reader(&c[..]).map_err(oci_err(&config_digest))?;
        Ok(Image {
            id: config_digest,
            manifest_digest: manifest_digest.to_string(),
            manifest,
            config,
            tags,
        })
    }

    /// Every image in the index, newest first.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let idx = self.read_index()?;
        let mut v: Vec<(String, Image)> = Vec::new();
        for (digest, e) in idx.images {
            // A damaged image does not hide the others (`damaged` lists it).
            if let Ok(img) = self.load_image(&digest, e.tags) {
                v.push((e.added.clone(), img));
            }
        }
        v.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(v.into_iter().map(|(_, i)| i).collect())
    }

    /// The stored image whose manifest has this digest.
    pub fn by_manifest(&self, manifest_digest: &str) -> Result<Image, ImageError> {
        let idx = self.read_index()?;
        let e = idx
            .images
            .get(manifest_digest)
            .ok_or_else(|| ImageError::NotFound(manifest_digest.to_string()))?;
        self.load_image(manifest_digest, e.tags.clone())
    }

    /// Find an image by `name[:tag]`, `name@digest`, id, or unique id prefix.
    pub fn find(&self, reference: &str) -> Result<Image, ImageError> {
        let idx = self.read_index()?;
        let id_like = reference.strip_prefix("sha256:").unwrap_or(reference);
        if id_like.len() >= 4 && id_like.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut found = Vec::new();
            for (digest, e) in &idx.images {
                let Ok(img) = self.load_image(digest, e.tags.clone()) else {
                    continue;
                };
                if hex_of(&img.id).starts_with(id_like) {
                    found.push(img);
                }
            }
            if found.len() == 1 {
                return Ok(found.remove(0));
            }
        }
        let r = Reference::parse(reference).map_err(ImageError::BadReference)?;
        let damaged = |e: ImageError| ImageError::Damaged {
            name: reference.to_string(),
            reason: crate::util::error_chain(&e),
        };
        if let Some(d) = &r.digest {
            if let Some(e) = idx.images.get(d) {
                return self.load_image(d, e.tags.clone()).map_err(damaged);
            }
        } else if let Some(t) = r.tagged() {
            for (digest, e) in &idx.images {
                if e.tags.contains(&t) {
                    return self.load_image(digest, e.tags.clone()).map_err(damaged);
                }
            }
        }
        Err(ImageError::NotFound(reference.to_string()))
    }

    /// The directory holding layer `index` of `image` unpacked, unpacking it on first use.
    pub fn layer_dir(&self, image: &Image, index: usize) -> Result<PathBuf, ImageError> {
        let diff_id = &image.diff_ids()[index];
        let dir = self.dir.join("layers").join(hex_of(diff_id));
        if dir.exists() {
            return Ok(dir);
        }
        // A lock per layer, not the store's: a long unpack holds up only those who
        // need the same layer.
        let lock = self
            .dir
            .join("locks")
            .join(format!("{}.lock", hex_of(diff_id)));
        let _l = Lock::exclusive(&lock).map_err(io_err(&lock))?;
        if dir.exists() {
            return Ok(dir);
        }
        let desc = &image.manifest.layers()[index];
        let digest = desc.digest().to_string();
        let tmp =
            self.dir
                .join("tmp")
                .join(format!("unpack-{}-{}", hex_of(diff_id), std::process::id()));
        remove_dir_all_if_exists(&tmp).map_err(io_err(&tmp))?;
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let blob = self.blob_path(&digest);
        let result = (|| {
            let f = fs::File::open(&blob).map_err(io_err(&blob))?;
            let reader = decompressed(f).map_err(io_err(&blob))?;
            let actual =
                unpack::unpack_layer(reader, &tmp).map_err(|source| ImageError::Unpack {
                    digest: digest.clone(),
                    source,
                })?;
            if &actual != diff_id {
                return Err(ImageError::DigestMismatch {
                    digest: diff_id.clone(),
                    actual,
                });
            }
            match fs::rename(&tmp, &dir) {
                // Another process (holding an older lock file) unpacked it first.
                Err(_) if dir.exists() => remove_dir_all_if_exists(&tmp).map_err(io_err(&tmp)),
                other => other.map_err(io_err(&dir)),
            }
        })();
        if result.is_err() {
            let _ = remove_dir_all_if_exists(&tmp);
        }
        result.map(|_| dir)
    }

    /// Every layer of `image` unpacked, lowest first.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        (0..image.diff_ids().len())
            .map(|i| self.layer_dir(image, i))
            .collect()
    }

    /// A scratch directory for temporary work inside the store's filesystem.
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_content_addressed_and_verified() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let dg = s.put_blob(b"hello").unwrap();
        assert_eq!(
            dg,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(s.read_blob(&dg).unwrap(), b"hello");
        fs::write(s.blob_path(&dg), b"tampered").unwrap();
        assert!(matches!(
            s.read_blob(&dg),
            Err(ImageError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn temp_names_carry_their_writers_pid() {
        assert_eq!(writer_pid("blob-123-a8Xk2"), Some(123));
        assert_eq!(writer_pid("unpack-abcdef-77"), Some(77));
        assert_eq!(writer_pid("commitXYZ"), None);
        assert_eq!(writer_pid("blob-x-1"), None);
    }

    #[test]
    fn gc_sweeps_temp_blobs_of_dead_writers_only() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let mine = s
            .tmp_dir()
            .join(format!("blob-{}-live", std::process::id()));
        // pid_max is at most 2^22: this pid never exists.
        let dead = s.tmp_dir().join("blob-99999999-dead");
        fs::write(&mine, b"x").unwrap();
        fs::write(&dead, b"x").unwrap();
        s.gc(&Default::default()).unwrap();
        assert!(mine.exists());
        assert!(!dead.exists());
    }

    #[test]
    fn unknown_image_is_not_found() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        assert!(matches!(s.find("nosuch"), Err(ImageError::NotFound(_))));
        assert!(matches!(
            s.find("Bad Name"),
            Err(ImageError::BadReference(_))
        ));
    }
}
