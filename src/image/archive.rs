//! Image archives, both ways and in both formats:
//!
//! - docker-archive (`docker save`): `manifest.json` (Config, RepoTags, Layers),
//!   `repositories`, the config as `<id>.json`, each layer as `<diffid>/layer.tar`
//!   (uncompressed, as Docker writes them);
//! - OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`): the stored
//!   blobs as they are, so manifest digests survive the trip.
//!
//! Loading verifies every digest (and size, where the archive states one) before
//! anything is tagged; blobs a failed load wrote are removed again.

use super::store::{sha256_digest, Image, ImageError, Store};
use super::Reference;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

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

/// The uncompressed tar of a (gzip, zstd or plain) layer.
fn decompress(b: &[u8]) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    super::store::decompressed(b)
        .and_then(|mut r| r.read_to_end(&mut out))
        .map_err(|e| bad(format!("a layer cannot be decompressed: {e}")))?;
    Ok(out)
}

/// The layer as an uncompressed tar (what its diff id hashes).
fn uncompressed(store: &Store, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
    let _ = desc.media_type();
    decompress(&store.read_blob(desc.digest().as_ref())?)
}

struct TarOut<W: Write> {
    b: tar::Builder<W>,
}

impl<W: Write> TarOut<W> {
    fn file(&mut self, name: &str, data: &[u8]) -> Result<(), ImageError> {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        self.b
            .append_data(&mut h, name, data)
            .map_err(|e| bad(format!("writing the archive: {e}")))
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
                let data = uncompressed(store, desc)?;
                t.dir(&dir)?;
                t.file(&format!("{dir}/VERSION"), b"1.0")?;
                t.file(&name, &data)?;
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
            t.file(
                &format!("blobs/sha256/{}", hex(digest)),
                &store.read_blob(digest)?,
            )?;
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
        let size = store.read_blob(&img.manifest_digest)?.len();
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

/// Every regular file of a tar archive, by normalized path. Links, devices and paths
/// that climb out are refused: an image archive has no business holding them.
fn read_entries<R: Read>(input: R) -> Result<HashMap<String, Vec<u8>>, ImageError> {
    let mut a = tar::Archive::new(input);
    let mut files = HashMap::new();
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
                let mut data = Vec::new();
                e.read_to_end(&mut data)
                    .map_err(|e| bad(format!("reading the archive: {e}")))?;
                files.insert(parts.join("/"), data);
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
    fn put(&mut self, data: &[u8]) -> Result<String, ImageError> {
        let d = sha256_digest(data);
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
        read_entries(flate2::read::GzDecoder::new(input))?
    } else {
        read_entries(input)?
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

fn load_docker(
    files: &HashMap<String, Vec<u8>>,
    blobs: &mut NewBlobs<'_>,
) -> Result<Loaded, ImageError> {
    let get = |n: &str| {
        files
            .get(n.trim_start_matches("./"))
            .ok_or_else(|| bad(format!("the archive lists {n} but does not contain it")))
    };
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(get("manifest.json")?)
        .map_err(|e| bad(format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for m in entries {
        let config_bytes = get(&m.config)?;
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
            let data = get(layer)?;
            let tar = decompress(data)?;
            let actual = sha256_digest(&tar);
            if &actual != diff_id {
                return Err(ImageError::DigestMismatch {
                    digest: diff_id.clone(),
                    actual,
                });
            }
            let digest = blobs.put(data)?;
            descs.push(Descriptor::new(
                if is_gzip(data) {
                    MediaType::ImageLayerGzip
                } else if is_zstd(data) {
                    MediaType::ImageLayerZstd
                } else {
                    MediaType::ImageLayer
                },
                data.len() as u64,
                digest
                    .parse::<oci_spec::image::Digest>()
                    .map_err(|e| bad(e.to_string()))?,
            ));
        }
        // The config exactly as it came: its digest is the image id.
        let cd = blobs.put(config_bytes)?;
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_bytes.len() as u64,
                cd.parse::<oci_spec::image::Digest>()
                    .map_err(|e| bad(e.to_string()))?,
            ))
            .layers(descs)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        let md = blobs.put(
            manifest
                .to_string()
                .map_err(|e| bad(e.to_string()))?
                .as_bytes(),
        )?;
        out.push((md, m.repo_tags.unwrap_or_default()));
    }
    Ok(out)
}

fn blob<'a>(
    files: &'a HashMap<String, Vec<u8>>,
    d: &Descriptor,
) -> Result<&'a Vec<u8>, ImageError> {
    let digest = d.digest().to_string();
    let data = files
        .get(&format!("blobs/sha256/{}", hex(&digest)))
        .ok_or_else(|| bad(format!("blob {digest} is missing from the layout")))?;
    let actual = sha256_digest(data);
    if actual != digest {
        return Err(ImageError::DigestMismatch { digest, actual });
    }
    if data.len() as u64 != d.size() {
        return Err(bad(format!(
            "blob {digest} is {} bytes, its descriptor says {}",
            data.len(),
            d.size()
        )));
    }
    Ok(data)
}

fn load_oci(
    files: &HashMap<String, Vec<u8>>,
    blobs: &mut NewBlobs<'_>,
) -> Result<Loaded, ImageError> {
    let index = ImageIndex::from_reader(&files["index.json"][..])
        .map_err(|e| bad(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    let mut todo: Vec<Descriptor> = index.manifests().clone();
    while let Some(d) = todo.pop() {
        let data = blob(files, &d)?;
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
        let cfg = ImageConfiguration::from_reader(&config[..]).map_err(|e| bad(e.to_string()))?;
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
        let md = blobs.put(data)?;
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
        let e = read_entries(&data[..]).err().unwrap().to_string();
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
