//! Image queries for the CLI.

use super::{Engine, EngineError};
use serde_json::json;

impl Engine {
    /// `image inspect`, with Docker's field names. The built-in busybox is created on
    /// first use, like `run` does.
    pub fn image_inspect(&self, reference: &str) -> Result<serde_json::Value, EngineError> {
        let img = self.images.find_or_builtin(reference)?;
        let c = &img.config;
        let cfg = c.config().clone().unwrap_or_default();
        let repo = img
            .tags
            .iter()
            .map(|t| t.rsplit_once(':').map(|(r, _)| r).unwrap_or(t).to_string())
            .collect::<Vec<_>>();
        Ok(json!({
            "Id": img.id,
            "RepoTags": img.tags,
            "RepoDigests": repo.iter().map(|r| format!("{r}@{}", img.manifest_digest)).collect::<Vec<_>>(),
            "Created": c.created(),
            "Architecture": c.architecture().to_string(),
            "Os": c.os().to_string(),
            "Size": img.size(),
            "Config": {
                "Env": cfg.env(),
                "Cmd": cfg.cmd(),
                "Entrypoint": cfg.entrypoint(),
                "WorkingDir": cfg.working_dir().clone().unwrap_or_default(),
                "User": cfg.user().clone().unwrap_or_default(),
                "ExposedPorts": cfg.exposed_ports(),
                "Labels": cfg.labels(),
            },
            "RootFS": {
                "Type": "layers",
                "Layers": img.diff_ids(),
            },
            "Manifest": img.manifest_digest,
            "History": c.history(),
        }))
    }
}

/// One row of `image history`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryRow {
    #[serde(rename = "ID")]
    pub id: String,
    pub created_at: String,
    pub created_by: String,
    /// Bytes of the layer's uncompressed tar (0 for empty layers).
    pub size: u64,
    pub comment: String,
}

/// What `rmi` did, line by line, Docker's words.
pub type RmiReport = Vec<String>;

impl Engine {
    /// Unpacked layer dirs that containers use: never collected.
    fn images_in_use(&self) -> Result<std::collections::HashSet<std::path::PathBuf>, EngineError> {
        let mut s = std::collections::HashSet::new();
        for r in self.store.list()? {
            s.extend(r.layers.iter().map(std::path::PathBuf::from));
        }
        Ok(s)
    }

    /// `tag SOURCE TARGET`.
    pub fn image_tag(&self, source: &str, target: &str) -> Result<(), EngineError> {
        let img = self.images.find_or_builtin(source)?;
        let r = crate::image::Reference::parse(target).map_err(EngineError::Invalid)?;
        let t = r.tagged().ok_or_else(|| {
            EngineError::Invalid(format!("cannot tag with a digest reference: {target}"))
        })?;
        let _l = self.images.lock()?;
        self.images.tag_manifest(&img.manifest_digest, Some(&t))?;
        Ok(())
    }

    /// `rmi [-f] IMAGE`: untag a name, delete an image nobody else names or uses.
    pub fn image_remove(&self, reference: &str, force: bool) -> Result<RmiReport, EngineError> {
        let img = match self.images.find(reference) {
            Err(crate::image::ImageError::Damaged { .. }) => {
                // Nothing of it can be used: it leaves the index, its blobs with gc.
                let _l = self.images.lock()?;
                let tags = self.images.forget_damaged(reference)?;
                self.images.gc(&self.images_in_use()?)?;
                let mut out: Vec<String> = tags.iter().map(|t| format!("Untagged: {t}")).collect();
                out.push(format!("Deleted damaged image {reference}"));
                return Ok(out);
            }
            other => other?,
        };
        let mut out = Vec::new();
        let users: Vec<_> = self
            .list(true)?
            .into_iter()
            .filter(|r| r.image_id == img.id)
            .collect();
        let by_tag = crate::image::Reference::parse(reference)
            .ok()
            .and_then(|r| r.tagged())
            .filter(|t| img.tags.contains(t));
        let _l = self.images.lock()?;
        // A name of an image that has other names: only the name goes.
        if let Some(t) = &by_tag {
            if img.tags.len() > 1 {
                self.images.untag(t)?;
                out.push(format!("Untagged: {t}"));
                return Ok(out);
            }
        }
        if let Some(r) = users.iter().find(|r| r.is_active()) {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {reference} (cannot be forced) - image is being used by running container {}",
                r.short_id()
            )));
        }
        if let (Some(r), false) = (users.first(), force) {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {reference} (must be forced) - image is being used by stopped container {}",
                r.short_id()
            )));
        }
        for t in &img.tags {
            out.push(format!("Untagged: {t}"));
        }
        self.images.remove_manifest(&img.manifest_digest)?;
        self.images.gc(&self.images_in_use()?)?;
        out.push(format!("Deleted: {}", img.id));
        Ok(out)
    }

    /// `image prune [-a]`: images without a tag (with `all`: every image) that no
    /// container uses. Returns the ids deleted and the bytes freed.
    pub fn image_prune(&self, all: bool) -> Result<(Vec<String>, u64), EngineError> {
        let used: std::collections::HashSet<String> =
            self.list(true)?.into_iter().map(|r| r.image_id).collect();
        let _l = self.images.lock()?;
        let mut gone = Vec::new();
        // A damaged index is rebuilt from the stored manifests; images that cannot be
        // loaded are dropped.
        if let Some(n) = self.images.repair_index()? {
            // The rebuilt images are untagged: this prune leaves them to their owner.
            Engine::warn(&format!(
                "twinbox: the image index was damaged: rebuilt with {n} images, untagged (`twinbox tag ID NAME` names them again; another prune removes the rest)"
            ));
            return Ok((gone, 0));
        }
        gone.extend(self.images.forget_all_damaged()?);
        for img in self.images.list()? {
            if (all || img.tags.is_empty()) && !used.contains(&img.id) {
                self.images.remove_manifest(&img.manifest_digest)?;
                gone.push(img.id);
            }
        }
        let freed = self.images.gc(&self.images_in_use()?)?;
        Ok((gone, freed))
    }

    /// `image history`: newest first, one row per history entry, each non-empty entry
    /// matched with its layer.
    pub fn image_history(&self, reference: &str) -> Result<Vec<HistoryRow>, EngineError> {
        let img = self.images.find_or_builtin(reference)?;
        let layers = img.manifest.layers().clone();
        let mut next_layer = 0;
        let mut rows = Vec::new();
        let history = img.config.history().clone().unwrap_or_default();
        for (i, h) in history.iter().enumerate() {
            let empty = h.empty_layer().unwrap_or(false);
            let size = if empty {
                0
            } else {
                let s = layers
                    .get(next_layer)
                    .map(|d| self.layer_size(d))
                    .unwrap_or(0);
                next_layer += 1;
                s
            };
            rows.push(HistoryRow {
                id: if i + 1 == history.len() {
                    img.short_id().to_string()
                } else {
                    "<missing>".into()
                },
                created_at: h.created().clone().unwrap_or_default(),
                created_by: h.created_by().clone().unwrap_or_default(),
                size,
                comment: h.comment().clone().unwrap_or_default(),
            });
        }
        rows.reverse();
        Ok(rows)
    }

    /// Uncompressed size of a stored layer.
    fn layer_size(&self, d: &oci_spec::image::Descriptor) -> u64 {
        std::fs::File::open(self.images.blob_path(d.digest().as_ref()))
            .and_then(crate::image::decompressed)
            .and_then(|mut r| std::io::copy(&mut r, &mut std::io::sink()))
            .unwrap_or(d.size())
    }

    /// `save`: the images named, in `format`, to `out`.
    pub fn image_save(
        &self,
        references: &[String],
        format: crate::image::archive::Format,
        out: impl std::io::Write,
    ) -> Result<(), EngineError> {
        let mut sel = Vec::new();
        for r in references {
            let img = self.images.find_or_builtin(r)?;
            // A name saves that name; an id saves every name the image has.
            let tags = crate::image::Reference::parse(r)
                .ok()
                .and_then(|x| x.tagged())
                .filter(|t| img.tags.contains(t))
                .map(|t| vec![t])
                .unwrap_or_else(|| img.tags.clone());
            match sel
                .iter_mut()
                .find(|(i, _): &&mut (crate::image::Image, Vec<String>)| i.id == img.id)
            {
                Some((_, t)) => t.extend(tags),
                None => sel.push((img, tags)),
            }
        }
        crate::image::archive::save(&self.images, &sel, format, out)?;
        Ok(())
    }

    /// `load`: every image of the archive, tagged as it says. Returns Docker's lines.
    pub fn image_load(&self, input: impl std::io::Read) -> Result<Vec<String>, EngineError> {
        let _l = self.images.lock()?;
        let loaded = crate::image::archive::load(&self.images, input)?;
        // Every name is checked before any is applied: a bad one tags nothing, and the
        // blobs just stored go again.
        for (_, tags) in &loaded {
            for t in tags {
                if let Err(e) = crate::image::Reference::parse(t) {
                    let _ = self.images.gc(&self.images_in_use()?);
                    return Err(EngineError::Invalid(format!(
                        "the archive names an image wrongly: {e}"
                    )));
                }
            }
        }
        let mut out = Vec::new();
        for (manifest, tags) in loaded {
            if tags.is_empty() {
                self.images.tag_manifest(&manifest, None)?;
            }
            for t in &tags {
                let r = crate::image::Reference::parse(t).map_err(EngineError::Invalid)?;
                let t = r.tagged().unwrap_or_else(|| t.clone());
                self.images.tag_manifest(&manifest, Some(&t))?;
                out.push(format!("Loaded image: {t}"));
            }
            if tags.is_empty() {
                out.push(format!(
                    "Loaded image ID: {}",
                    self.images.by_manifest(&manifest)?.id
                ));
            }
        }
        Ok(out)
    }
}

/// One row of `system df`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DfRow {
    pub kind: String,
    pub total: usize,
    pub active: usize,
    pub size: u64,
    pub reclaimable: u64,
}

impl Engine {
    /// `system df`: images (their stored blobs and unpacked layers) and containers
    /// (their writable layers and disks).
    pub fn system_df(&self) -> Result<Vec<DfRow>, EngineError> {
        let containers = self.list(true)?;
        let used: std::collections::HashSet<&str> =
            containers.iter().map(|r| r.image_id.as_str()).collect();
        let images = self.images.list()?;
        let dir = self.images.dir();
        let size = crate::util::fs::disk_usage(&dir.join("blobs"))
            + crate::util::fs::disk_usage(&dir.join("layers"))
            + crate::util::fs::disk_usage(&dir.join("rootfs"));
        let unused: u64 = images
            .iter()
            .filter(|i| !used.contains(i.id.as_str()))
            .map(|i| i.size())
            .sum();
        let mut csize = 0;
        let mut creclaim = 0;
        for r in &containers {
            let d = self.paths.container_dir(&r.id);
            let s = crate::util::fs::disk_usage(&d.join("upper"));
            csize += s;
            if !r.is_active() {
                creclaim += s;
            }
        }
        Ok(vec![
            DfRow {
                kind: "Images".into(),
                total: images.len(),
                active: images
                    .iter()
                    .filter(|i| used.contains(i.id.as_str()))
                    .count(),
                size,
                reclaimable: unused.min(size),
            },
            DfRow {
                kind: "Containers".into(),
                total: containers.len(),
                active: containers.iter().filter(|r| r.is_active()).count(),
                size: csize,
                reclaimable: creclaim,
            },
            {
                let vs = self.volume_store()?;
                let vols = self.volume_list()?;
                let size = |v: &super::VolumeInfo| vs.size(&v.volume.name);
                DfRow {
                    kind: "Local Volumes".into(),
                    total: vols.len(),
                    active: vols.iter().filter(|v| !v.users.is_empty()).count(),
                    size: vols.iter().map(size).sum(),
                    reclaimable: vols.iter().filter(|v| v.users.is_empty()).map(size).sum(),
                }
            },
        ])
    }
}

impl Engine {
    /// A client for `r`'s registry: plain HTTP when asked (`--insecure`), when the
    /// settings' insecure-registries name it, or for localhost.
    fn registry_client(
        r: &crate::image::Reference,
        insecure: bool,
    ) -> Result<crate::image::registry::Client, EngineError> {
        let insecure = insecure
            || crate::settings::load()
                .map_err(|e| EngineError::Invalid(e.to_string()))?
                .is_insecure(&crate::image::registry::api_host(r));
        Ok(crate::image::registry::Client::new(r, insecure))
    }

    /// `pull NAME[:TAG|@DIGEST]`. Returns (manifest digest, the name it is tagged as).
    pub fn pull(
        &self,
        reference: &str,
        insecure: bool,
        quiet: bool,
    ) -> Result<(String, Option<String>), EngineError> {
        let mut r = crate::image::Reference::parse(reference).map_err(EngineError::Invalid)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".into());
        }
        let what = r
            .digest
            .clone()
            .or_else(|| r.tag.clone())
            .unwrap_or_default();
        let mut c = Self::registry_client(&r, insecure)?;
        let _l = self.images.lock()?;
        let digest = c.pull(&self.images, &what, quiet)?;
        let tag = if r.digest.is_some() { None } else { r.tagged() };
        self.images.tag_manifest(&digest, tag.as_deref())?;
        Ok((digest, tag))
    }

    /// `push NAME[:TAG]`. Returns (digest, one line per blob).
    pub fn push(
        &self,
        reference: &str,
        insecure: bool,
    ) -> Result<(String, Vec<String>), EngineError> {
        let img = self.images.find(reference)?;
        let mut r = crate::image::Reference::parse(reference).map_err(EngineError::Invalid)?;
        if r.tag.is_none() {
            r.tag = Some("latest".into());
        }
        let tag = r.tag.clone().unwrap_or_default();
        // Other repositories of the same registry this store knows the image's blobs
        // from (by name): the registry can mount blobs from them.
        let mut from = Vec::new();
        for i in self.images.list()? {
            for t in &i.tags {
                if let Ok(o) = crate::image::Reference::parse(t) {
                    if o.registry == r.registry
                        && o.repository != r.repository
                        && !from.contains(&o.repository)
                    {
                        from.push(o.repository);
                    }
                }
            }
        }
        let mut c = Self::registry_client(&r, insecure)?;
        let mut log = Vec::new();
        let d = c.push(&self.images, &img.manifest_digest, &tag, &from, &mut log)?;
        Ok((d, log))
    }

    /// `login SERVER`: the credentials are checked against the registry, then kept.
    pub fn login(
        &self,
        server: &str,
        user: &str,
        pass: &str,
        insecure: bool,
    ) -> Result<(), EngineError> {
        let r = crate::image::Reference::parse(&format!("{server}/twinbox-login-probe"))
            .map_err(EngineError::Invalid)?;
        let mut c = Self::registry_client(&r, insecure)?.with_credentials(user, pass);
        c.ping()?;
        crate::image::registry::save_credentials(&r.registry, user, pass)?;
        Ok(())
    }

    pub fn logout(&self, server: &str) -> Result<bool, EngineError> {
        Ok(crate::image::registry::forget_credentials(server)?)
    }
}
