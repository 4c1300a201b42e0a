//! Image archives, both ways and in both formats:
//!
//! - docker-archive (`docker save`): `manifest.json` (Config, RepoTags, Layers),
//!   `repositories`, the config as `<id>.json`, each layer as `<diffid>/layer.tar`
//!   (uncompressed, as Docker writes them);
//! - OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`): the stored
//!   blobs as they are, so manifest digests survive the trip.
//!
//! Loading verifies every digest (and size, where the archive states one) before
//! anything is tagged; blobs a failed load wrote are removed again. Both ways stream:
//! archive entries go to temp files in the store while they are hashed, and blobs are
//! read from disk into the archive, so no layer is held in memory.

use super::blob::{digest_of, Hashing, TempBlob};
use super::store::{decompressed, Image, ImageError, Store};
use super::Reference;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::rc::Rc;

/// The most a JSON document in an archive (manifest, config, index) may weigh.
const DOC_LIMIT: u64 = 16 << 20;

/// Archive formats `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DockerArchive,
    OciArchive,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "docker-archive" | "docker" => Ok(Format::DockerArchive),
            "oci-archive" | "oci" => Ok(Format::OciArchive),
            o => Err(format!(
                "unknown archive format {o:?}: use docker-archive or oci-archive"
            )),
        }
    }
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn bad(what: impl Into<String>) -> ImageError {
    ImageError::BadArchive(what.into())
}

fn hex(d: &str) -> &str {
    d.strip_prefix("sha256:").unwrap_or(d)
}

fn is_gzip(b: &[u8]) -> bool {
    b.len() > 2 && b[0] == 0x1f && b[1] == 0x8b
}

fn is_zstd(b: &[u8]) -> bool {
    b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

/// A layer's media type, told by its first bytes.
fn layer_media_type(mut f: impl Read) -> io::Result<MediaType> {
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    Ok(if is_gzip(head) {
        MediaType::ImageLayerGzip
    } else if is_zstd(head) {
        MediaType::ImageLayerZstd
    } else {
        MediaType::ImageLayer
    })
}

/// Reads a stored blob and fails at its end if the content does not hash to its
/// digest: a damaged blob never makes a complete archive.
struct Verified<R> {
    inner: Hashing<R>,
    digest: String,
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let actual = self.inner.digest();
            if actual != self.digest {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} is corrupt: its content hashes to {actual}",
                        self.digest
                    ),
                ));
            }
        }
        Ok(n)
    }
}

fn verified(
    store: &Store,
    digest: &str,
) -> Result<(u64, Verified<io::BufReader<std::fs::File>>), ImageError> {
    let f = store.open_blob(digest)?;
    let p = store.blob_path(digest);
    let size = f.metadata().map_err(super::store::io_err(&p))?.len();
    Ok((
        size,
        Verified {
            inner: Hashing::new(io::BufReader::with_capacity(1 << 20, f)),
            digest: digest.to_string(),
        },
    ))
}

struct TarOut<W: Write> {
    b: tar::Builder<W>,
}

impl<W: Write> TarOut<W> {
    fn file(&mut self, name: &str, data: &[u8]) -> Result<(), ImageError> {
        self.file_from(name, data.len() as u64, data)
    }

    /// A file of `size` bytes streamed from `data`.
    fn file_from(&mut self, name: &str, size: u64, data: impl Read) -> Result<(), ImageError> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        self.b
            .append_data(&mut h, name, data)
            .map_err(|e| bad(format!("writing the archive: {e}")))
    }

    /// A stored blob, verified on the way.
    fn blob(&mut self, name: &str, store: &Store, digest: &str) -> Result<(), ImageError> {
        let (size, r) = verified(store, digest)?;
        self.file_from(name, size, r)
    }

    fn dir(&mut self, name: &str) -> Result<(), ImageError> {
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Directory);
        self.b
            .append_data(&mut h, name, &[][..])
            .map_err(|e| bad(format!("writing the archive: {e}")))
    }
}

/// Write `images` (each with the tags to record) to `out`.
pub fn save<W: Write>(
    store: &Store,
    images: &[(Image, Vec<String>)],
    format: Format,
    out: W,
) -> Result<(), ImageError> {
    let mut t = TarOut {
        b: tar::Builder::new(out),
    };
    match format {
        Format::DockerArchive => save_docker(store, images, &mut t)?,
        Format::OciArchive => save_oci(store, images, &mut t)?,
    }
    t.b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| bad(format!("writing the archive: {e}")))
}

fn save_docker<W: Write>(
    store: &Store,
    images: &[(Image, Vec<String>)],
    t: &mut TarOut<W>,
) -> Result<(), ImageError> {
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut written = std::collections::HashSet::new();
    for (img, tags) in images {
        let config_name = format!("{}.json", hex(&img.id));
        if written.insert(config_name.clone()) {
            t.file(&config_name, &store.read_blob(&img.id)?)?;
        }
        let mut layers = Vec::new();
        for (desc, diff_id) in img.manifest.layers().iter().zip(img.diff_ids()) {
            let dir = hex(diff_id).to_string();
            let name = format!("{dir}/layer.tar");
            if written.insert(name.clone()) {
                t.dir(&dir)?;
                t.file(&format!("{dir}/VERSION"), b"1.0")?;
                let digest = desc.digest().to_string();
                if layer_media_type(store.open_blob(&digest)?)
                    .map_err(super::store::io_err(&store.blob_path(&digest)))?
                    == MediaType::ImageLayer
                {
                    t.blob(&name, store, &digest)?;
                } else {
                    // Docker's layer.tar is uncompressed and a tar header needs its
                    // size first: decompress to a temp file (checked against the diff id).
                    let (_, r) = verified(store, &digest)?;
                    let mut plain = decompressed(r)
                        .map_err(|e| bad(format!("layer {digest} cannot be decompressed: {e}")))?;
                    let tmp = store.temp_blob(&mut plain, &format!("layer {digest}"))?;
                    tmp.expect(diff_id, None)?;
                    t.file_from(&name, tmp.size, io::BufReader::new(tmp.open()?))?;
                }
            }
            layers.push(name);
        }
        for tag in tags {
            if let Some((repo, tg)) = tag.rsplit_once(':') {
                repositories.entry(repo.to_string()).or_default().insert(
                    tg.to_string(),
                    hex(&img.diff_ids().last().cloned().unwrap_or_default()).to_string(),
                );
            }
        }
        manifest.push(DockerManifestEntry {
            config: config_name,
            repo_tags: Some(tags.clone()),
            layers,
        });
    }
    t.file(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("manifest serializes"),
    )?;
    t.file(
        "repositories",
        &serde_json::to_vec(&repositories).expect("repositories serialize"),
    )
}

fn save_oci<W: Write>(
    store: &Store,
    images: &[(Image, Vec<String>)],
    t: &mut TarOut<W>,
) -> Result<(), ImageError> {
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    t.dir("blobs")?;
    t.dir("blobs/sha256")?;
    let mut written = std::collections::HashSet::new();
    let mut put = |t: &mut TarOut<W>, digest: &str| -> Result<(), ImageError> {
        if written.insert(digest.to_string()) {
            t.blob(&format!("blobs/sha256/{}", hex(digest)), store, digest)?;
        }
        Ok(())
    };
    let mut manifests = Vec::new();
    for (img, tags) in images {
        put(t, &img.manifest_digest)?;
        put(t, &img.id)?;
        for l in img.manifest.layers() {
            put(t, l.digest().as_ref())?;
        }
        let size = store.verify_blob(&img.manifest_digest)?;
        let names: Vec<Option<&String>> = if tags.is_empty() {
            vec![None]
        } else {
            tags.iter().map(Some).collect()
        };
        for name in names {
            let mut m = serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": img.manifest_digest,
                "size": size,
                "platform": {"architecture": "amd64", "os": "linux"},
            });
            if let Some(n) = name {
                let full = Reference::parse(n)
                    .map(|r| {
                        format!(
                            "{}/{}:{}",
                            r.registry,
                            r.repository,
                            r.tag.clone().unwrap_or_else(|| "latest".into())
                        )
                    })
                    .unwrap_or_else(|_| n.clone());
                m["annotations"] = serde_json::json!({
                    "io.containerd.image.name": full,
                    "org.opencontainers.image.ref.name": n.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest"),
                });
            }
            manifests.push(m);
        }
    }
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
    t.file(
        "index.json",
        &serde_json::to_vec(&index).expect("index serializes"),
    )
}

/// Every regular file of a tar archive, by normalized path, streamed into temp blobs
/// of the store. Links, devices and paths that climb out are refused: an image
/// archive has no business holding them.
type Entries = HashMap<String, Rc<TempBlob>>;

fn read_entries<R: Read>(store: &Store, input: R) -> Result<Entries, ImageError> {
    let mut a = tar::Archive::new(input);
    let mut files: Entries = HashMap::new();
    for e in a
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?
    {
        let mut e = e.map_err(|e| bad(format!("reading the archive: {e}")))?;
        let path = e
            .path()
            .map_err(|e| bad(format!("bad entry name: {e}")))?
            .into_owned();
        let mut parts = Vec::new();
        for c in path.components() {
            match c {
                std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                std::path::Component::CurDir => {}
                _ => {
                    return Err(bad(format!(
                        "entry {} climbs out of the archive",
                        path.display()
                    )))
                }
            }
        }
        match e.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let t = store
                    .temp_blob(&mut e, "the archive")
                    .map_err(|err| match err {
                        ImageError::Read { source, .. } => {
                            bad(format!("reading the archive: {source}"))
                        }
                        other => other,
                    })?;
                files.insert(parts.join("/"), Rc::new(t));
            }
            tar::EntryType::Directory => {}
            // Docker's older archives link repeated layers; resolve within the archive.
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = e
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let base = parts[..parts.len().saturating_sub(1)].join("/");
                let resolved = if e.header().entry_type() == tar::EntryType::Link {
                    target.trim_start_matches("./").to_string()
                } else {
                    normalize(&format!("{base}/{target}")).ok_or_else(|| {
                        bad(format!("link {} climbs out of the archive", path.display()))
                    })?
                };
                let data = files
                    .get(&resolved)
                    .cloned()
                    .ok_or_else(|| bad(format!("link {} to a missing entry", path.display())))?;
                files.insert(parts.join("/"), data);
            }
            other => {
                return Err(bad(format!(
                    "entry {} has an unexpected type {other:?}",
                    path.display()
                )))
            }
        }
    }
    Ok(files)
}

/// A JSON document of the archive, whole.
fn doc(t: &TempBlob, name: &str) -> Result<Vec<u8>, ImageError> {
    t.read_all(DOC_LIMIT).map_err(|e| match e {
        ImageError::BadArchive(m) => bad(format!("{name}: {m}")),
        other => other,
    })
}

fn normalize(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            x => out.push(x),
        }
    }
    Some(out.join("/"))
}

/// Blobs a load wrote that were not in the store before: removed if the load fails.
struct NewBlobs<'a> {
    store: &'a Store,
    digests: Vec<String>,
    keep: bool,
}

impl NewBlobs<'_> {
    fn put(&mut self, t: &TempBlob) -> Result<String, ImageError> {
        if t.persist(self.store)? {
            self.digests.push(t.digest.clone());
        }
        Ok(t.digest.clone())
    }

    fn put_bytes(&mut self, data: &[u8]) -> Result<String, ImageError> {
        let d = super::store::sha256_digest(data);
        if !self.store.blob_path(&d).exists() {
            self.digests.push(d.clone());
        }
        self.store.put_blob(data)
    }
}

impl Drop for NewBlobs<'_> {
    fn drop(&mut self) {
        if !self.keep {
            for d in &self.digests {
                let _ = std::fs::remove_file(self.store.blob_path(d));
            }
        }
    }
}

/// What a load brought in: (manifest digest, tags).
pub type Loaded = Vec<(String, Vec<String>)>;

/// Load a docker-archive or an OCI layout tarball (plain or gzip'ed). Callers hold the
/// store lock; tagging is theirs too.
pub fn load<R: Read>(store: &Store, input: R) -> Result<Loaded, ImageError> {
    let mut input = std::io::BufReader::new(input);
    let head = {
        use std::io::BufRead;
        input
            .fill_buf()
            .map_err(|e| bad(format!("reading the archive: {e}")))?
            .to_vec()
    };
    let files = if is_gzip(&head) {
        read_entries(store, flate2::read::GzDecoder::new(input))?
    } else {
        read_entries(store, input)?
    };
    let mut blobs = NewBlobs {
        store,
        digests: Vec::new(),
        keep: false,
    };
    let out = if files.contains_key("index.json") && files.contains_key("oci-layout") {
        load_oci(&files, &mut blobs)?
    } else if files.contains_key("manifest.json") {
        load_docker(&files, &mut blobs)?
    } else {
        return Err(bad(
            "neither a docker-archive (manifest.json) nor an OCI layout (oci-layout, index.json)",
        ));
    };
    blobs.keep = true;
    Ok(out)
}

fn load_docker(files: &Entries, blobs: &mut NewBlobs<'_>) -> Result<Loaded, ImageError> {
    let get = |n: &str| {
        files
            .get(n.trim_start_matches("./"))
            .ok_or_else(|| bad(format!("the archive lists {n} but does not contain it")))
    };
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&doc(get("manifest.json")?, "manifest.json")?)
            .map_err(|e| bad(format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for m in entries {
        let config_blob = get(&m.config)?;
        let config_bytes = doc(config_blob, &m.config)?;
        let config = ImageConfiguration::from_reader(&config_bytes[..])
            .map_err(|e| bad(format!("{}: {e}", m.config)))?;
        let want = config.rootfs().diff_ids().clone();
        if want.len() != m.layers.len() {
            return Err(bad(format!(
                "{} names {} layers but manifest.json lists {}",
                m.config,
                want.len(),
                m.layers.len()
            )));
        }
        let mut descs = Vec::new();
        for (layer, diff_id) in m.layers.iter().zip(&want) {
            let t = get(layer)?;
            let media = layer_media_type(t.open()?).map_err(|e| bad(format!("{layer}: {e}")))?;
            let (actual, _) = decompressed(t.open()?)
                .and_then(|mut r| digest_of(&mut r))
                .map_err(|e| bad(format!("{layer} cannot be decompressed: {e}")))?;
            if &actual != diff_id {
                return Err(ImageError::DigestMismatch {
                    digest: diff_id.clone(),
                    actual,
                });
            }
            let digest = blobs.put(t)?;
            descs.push(Descriptor::new(
                media,
                t.size,
                digest
                    .parse::<oci_spec::image::Digest>()
                    .map_err(|e| bad(e.to_string()))?,
            ));
        }
        // The config exactly as it came: its digest is the image id.
        let cd = blobs.put(config_blob)?;
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_blob.size,
                cd.parse::<oci_spec::image::Digest>()
                    .map_err(|e| bad(e.to_string()))?,
            ))
            .layers(descs)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let md = blobs.put_bytes(
            manifest
                .to_string()
                .map_err(|e| bad(e.to_string()))?
                .as_bytes(),
        )?;
        out.push((md, m.repo_tags.unwrap_or_default()));
    }
    Ok(out)
}

/// The layout's blob for `d`, checked against it.
fn blob<'a>(files: &'a Entries, d: &Descriptor) -> Result<&'a TempBlob, ImageError> {
    let digest = d.digest().to_string();
    let t = files
        .get(&format!("blobs/sha256/{}", hex(&digest)))
        .ok_or_else(|| bad(format!("blob {digest} is missing from the layout")))?;
    t.expect(&digest, Some(d.size()))?;
    Ok(t)
}

fn load_oci(files: &Entries, blobs: &mut NewBlobs<'_>) -> Result<Loaded, ImageError> {
    let index = ImageIndex::from_reader(&doc(&files["index.json"], "index.json")?[..])
        .map_err(|e| bad(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    let mut todo: Vec<Descriptor> = index.manifests().clone();
    while let Some(d) = todo.pop() {
        let t = blob(files, &d)?;
        let data = doc(t, d.digest().as_ref())?;
        if *d.media_type() == MediaType::ImageIndex {
            let nested = ImageIndex::from_reader(&data[..]).map_err(|e| bad(e.to_string()))?;
            // A multi-arch index: linux/amd64 only.
            todo.extend(
                nested
                    .manifests()
                    .iter()
                    .filter(|m| {
                        m.platform().as_ref().is_none_or(|p| {
                            p.architecture().to_string() == "amd64" && p.os().to_string() == "linux"
                        })
                    })
                    .cloned(),
            );
            continue;
        }
        let manifest = ImageManifest::from_reader(&data[..])
            .map_err(|e| bad(format!("manifest {}: {e}", d.digest())))?;
        let config = blob(files, manifest.config())?;
        let cfg = ImageConfiguration::from_reader(&doc(config, "a config")?[..])
            .map_err(|e| bad(e.to_string()))?;
        if cfg.rootfs().diff_ids().len() != manifest.layers().len() {
            return Err(bad(format!(
                "manifest {} and its config disagree on the layers",
                d.digest()
            )));
        }
        for l in manifest.layers() {
            blobs.put(blob(files, l)?)?;
        }
        blobs.put(config)?;
        let md = blobs.put(t)?;
        let ann = d.annotations().clone().unwrap_or_default();
        let name = ann
            .get("io.containerd.image.name")
            .cloned()
            .or_else(|| ann.get("org.opencontainers.image.ref.name").cloned());
        let tags = match name {
            // A bare tag ("latest") names no repository: nothing to tag.
            Some(n) if n.contains(':') || n.contains('/') => Reference::parse(&n)
                .ok()
                .and_then(|r| r.tagged())
                .into_iter()
                .collect(),
            _ => vec![],
        };
        out.push((md, tags));
    }
    if out.is_empty() {
        return Err(bad("the layout holds no linux/amd64 image"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_that_climb_out_are_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses "..": write the raw name.
        h.as_gnu_mut().unwrap().name[..10].copy_from_slice(b"../evil.js");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let e = read_entries(&store, &data[..]).err().unwrap().to_string();
        assert!(e.contains("climbs out"), "{e}");
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize("a/./b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize("../x"), None);
    }

    #[test]
    fn formats_parse() {
        assert_eq!("oci-archive".parse::<Format>().unwrap(), Format::OciArchive);
        assert!("zip".parse::<Format>().is_err());
    }
}
