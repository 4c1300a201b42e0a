//! `export CONTAINER` (its filesystem as a tarball) and `import TARBALL [REF]` (a
//! tarball as a one-layer image).

use super::{io_err, Engine, EngineError};
use crate::image::blob::Hashing;
use crate::image::Reference;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder, MediaType, Os,
    RootFsBuilder,
};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

fn q(p: &std::path::Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

/// The `name:tag` an image gets from a user's reference (`latest` if none is given).
fn tag_name(reference: &str) -> Result<String, EngineError> {
    let mut r = Reference::parse(reference).map_err(EngineError::Invalid)?;
    if r.digest.is_some() {
        return Err(EngineError::Invalid(format!(
            "{reference}: a digest cannot name a new image"
        )));
    }
    if r.tag.is_none() {
        r.tag = Some("latest".into());
    }
    Ok(r.tagged().unwrap_or_else(|| reference.to_string()))
}

/// A Dockerfile instruction from `--change`, applied to an image config.
pub fn apply_change(cfg: &mut oci_spec::image::Config, change: &str) -> Result<(), String> {
    let (op, arg) = change
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("invalid --change {change:?}: expected INSTRUCTION ARGUMENTS"))?;
    let arg = arg.trim();
    let list = || -> Vec<String> {
        serde_json::from_str::<Vec<String>>(arg)
            .unwrap_or_else(|_| vec!["/bin/sh".into(), "-c".into(), arg.to_string()])
    };
    match op.to_ascii_uppercase().as_str() {
        "CMD" => {
            cfg.set_cmd(Some(list()));
        }
        "ENTRYPOINT" => {
            cfg.set_entrypoint(Some(list()));
        }
        "WORKDIR" => {
            cfg.set_working_dir(Some(arg.to_string()));
        }
        "USER" => {
            cfg.set_user(Some(arg.to_string()));
        }
        "ENV" => {
            let kv = match arg.split_once('=') {
                Some((k, v)) => format!("{}={}", k.trim(), v.trim_matches('"')),
                None => {
                    let (k, v) = arg
                        .split_once(char::is_whitespace)
                        .ok_or_else(|| format!("invalid ENV {arg:?}"))?;
                    format!("{k}={}", v.trim())
                }
            };
            let env = crate::spec::merge_env(&cfg.env().clone().unwrap_or_default(), &[kv]);
            cfg.set_env(Some(env));
        }
        "EXPOSE" => {
            let mut ports = cfg.exposed_ports().clone().unwrap_or_default();
            for p in arg.split_whitespace() {
                let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                if !ports.contains(&p) {
                    ports.push(p);
                }
            }
            cfg.set_exposed_ports(Some(ports));
        }
        "LABEL" => {
            let mut labels = cfg.labels().clone().unwrap_or_default();
            let (k, v) = arg.split_once('=').ok_or_else(|| format!("invalid LABEL {arg:?}"))?;
            labels.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
            cfg.set_labels(Some(labels));
        }
        other => {
            return Err(format!(
                "--change {other} is not supported: use CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE or LABEL"
            ))
        }
    }
    Ok(())
}

impl Engine {
    /// `export`: the container's merged filesystem (image layers + its changes) as a
    /// tar stream, assembled in a private mount namespace (nothing is mounted on the
    /// host). Both models keep their changes in a host directory (a microVM writes
    /// them through virtio-fs), so a running container exports as a stopped one.
    pub fn export(&self, container: &str, out: &mut dyn Write) -> Result<(), EngineError> {
        let rec = self.get(container)?;
        let dir = self.paths.container_dir(&rec.id);
        let work = tempfile::Builder::new()
            .prefix("export")
            .tempdir_in(self.images.tmp_dir())
            .map_err(io_err("temporary directory"))?;
        let merged = work.path().join("m");
        std::fs::create_dir_all(&merged).map_err(io_err("temporary directory"))?;
        let mut script = String::from("set -e\n");
        let upper = dir.join("upper");
        // tar by its path: a shell may prefer a built-in applet to PATH (busybox's ash
        // does), and busybox's tar knows neither --numeric-owner nor --xattrs.
        let tar = crate::util::fs::which("tar")
            .ok_or_else(|| EngineError::Invalid("export needs GNU tar: install tar".into()))?;
        // The upper dir serves as the top read-only layer: its whiteouts apply.
        let mut lowers = vec![q(&upper)];
        lowers.extend(rec.layers.iter().rev().map(|l| q(std::path::Path::new(l))));
        script += &format!(
            "[ -d {up} ] || mkdir -p {up}\nmount -t overlay -o ro,lowerdir={} none {}\nexec {} --numeric-owner --xattrs -C {} -cf - .\n",
            lowers.join(":").replace('\'', ""),
            q(&merged),
            q(&tar),
            q(&merged),
            up = q(&upper),
        );
        let mut child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err("unshare (util-linux)"))?;
        let mut so = child.stdout.take().expect("piped");
        std::io::copy(&mut so, out).map_err(io_err("writing the export"))?;
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let st = child.wait().map_err(io_err("export"))?;
        if !st.success() {
            return Err(EngineError::Invalid(format!(
                "export of {} failed: {}",
                rec.name,
                err.lines().last().unwrap_or("").trim()
            )));
        }
        Ok(())
    }

    /// `import`: a root filesystem tarball (plain or gzip) as a one-layer image.
    pub fn import(
        &self,
        input: &mut dyn Read,
        source: &str,
        reference: Option<&str>,
        changes: &[String],
    ) -> Result<String, EngineError> {
        let tag = reference.map(tag_name).transpose()?;
        let mut cfg = ConfigBuilder::default()
            .env(vec![format!("PATH={}", crate::spec::DEFAULT_PATH)])
            .build()
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        for c in changes {
            apply_change(&mut cfg, c).map_err(EngineError::Invalid)?;
        }
        // gzip is kept as it came; plain and zstd tarballs are stored gzip'ed. Both
        // stream into a temp blob of the store.
        let mut input = std::io::BufReader::with_capacity(1 << 20, input);
        let gzip = std::io::BufRead::fill_buf(&mut input)
            .map_err(io_err(format!("cannot read {source}")))?
            .starts_with(&[0x1f, 0x8b]);
        let blob = if gzip {
            self.images.temp_blob(&mut input, source)?
        } else {
            let mut plain = crate::image::decompressed(input)
                .map_err(|e| EngineError::Invalid(format!("{source}: {e}")))?;
            let mut gz = flate2::write::GzEncoder::new(
                self.images.blob_writer()?,
                flate2::Compression::new(6),
            );
            std::io::copy(&mut plain, &mut gz)
                .map_err(|e| EngineError::Invalid(format!("{source}: {e}")))?;
            gz.finish()
                .map_err(io_err("compressing the layer"))?
                .finish()?
        };
        // One pass over what will be stored: it must be a tar archive with entries, and
        // its uncompressed digest is the layer's diff id.
        let diff_id = {
            let not_tar = |e: std::io::Error| {
                EngineError::Invalid(format!("{source}: not a tar archive: {e}"))
            };
            let f = blob.open()?;
            let mut r = Hashing::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
            let mut a = tar::Archive::new(&mut r);
            let mut n = 0;
            for e in a.entries().map_err(not_tar)? {
                e.map_err(not_tar)?;
                n += 1;
            }
            if n == 0 {
                return Err(EngineError::Invalid(format!("{source}: an empty archive")));
            }
            std::io::copy(&mut r, &mut std::io::sink()).map_err(not_tar)?;
            r.finish().1
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let bad = |e: oci_spec::OciSpecError| EngineError::Invalid(e.to_string());
        let config = ImageConfigurationBuilder::default()
            .created(now.clone())
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .config(cfg)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![diff_id])
                    .build()
                    .map_err(bad)?,
            )
            .history(vec![HistoryBuilder::default()
                .created(now)
                .created_by(format!("twinbox import {source}"))
                .comment("Imported from ".to_string() + source)
                .build()
                .map_err(bad)?])
            .build()
            .map_err(bad)?;
        let _l = self.images.lock()?;
        blob.persist(&self.images)?;
        let desc = Descriptor::new(
            MediaType::ImageLayerGzip,
            blob.size,
            blob.digest
                .parse::<oci_spec::image::Digest>()
                .map_err(bad)?,
        );
        let manifest = self.images.put_image(&config, vec![desc])?;
        self.images.tag_manifest(&manifest, tag.as_deref())?;
        Ok(self.images.by_manifest(&manifest)?.id)
    }
}

impl Engine {
    /// `diff`: the container's changes over its image, as Docker lists them (both
    /// models: a microVM writes its upper directory on the host through virtio-fs).
    pub fn diff(
        &self,
        container: &str,
    ) -> Result<Vec<(crate::image::changes::Change, String)>, EngineError> {
        let rec = self.get(container)?;
        let upper = self.paths.container_dir(&rec.id).join("upper");
        let lowers: Vec<std::path::PathBuf> =
            rec.layers.iter().map(std::path::PathBuf::from).collect();
        crate::image::changes::changes(&upper, &lowers)
            .map_err(io_err(format!("cannot read the changes of {}", rec.name)))
    }

    /// The container's changes (its upper directory) as an uncompressed OCI layer.
    fn container_diff(
        &self,
        rec: &crate::state::ContainerRecord,
        pause: bool,
        out: &mut dyn Write,
    ) -> Result<(), EngineError> {
        let upper = self.paths.container_dir(&rec.id).join("upper");
        let running = rec.state.status == crate::state::Status::Running;
        if running && pause {
            self.pause(&rec.id)?;
        }
        let r = crate::image::diff::pack_upper(&upper, out, rec.spec.security.userns);
        if running && pause {
            self.unpause(&rec.id)?;
        }
        r.map_err(io_err(format!("cannot read the changes of {}", rec.name)))
    }

    /// `commit`: the container's changes become a new layer on top of its image; the
    /// container's command, environment, working directory and user become the new
    /// image's defaults, then `changes` apply.
    pub fn commit(
        &self,
        container: &str,
        reference: Option<&str>,
        changes: &[String],
        message: Option<&str>,
        author: Option<&str>,
        pause: bool,
    ) -> Result<String, EngineError> {
        let rec = self.get(container)?;
        let tag = reference.map(tag_name).transpose()?;
        let base = self.images.find(&rec.image_id).map_err(|_| {
            EngineError::Conflict(format!(
                "the image of container {} ({}) is no longer in the store",
                rec.name, rec.image
            ))
        })?;
        let mut cfg = base.config.config().clone().unwrap_or_default();
        cfg.set_env(Some(rec.spec.process.env.clone()));
        cfg.set_cmd(Some(rec.cmd.clone()).filter(|c| !c.is_empty()));
        cfg.set_entrypoint(Some(rec.entrypoint.clone()).filter(|c| !c.is_empty()));
        cfg.set_working_dir(Some(rec.spec.process.cwd.clone()));
        cfg.set_user(Some(rec.user.clone()).filter(|u| !u.is_empty()));
        for c in changes {
            apply_change(&mut cfg, c).map_err(EngineError::Invalid)?;
        }
        // The changes as a tar, gzip'ed into a temp blob; the diff id hashes the tar.
        let mut gz =
            flate2::write::GzEncoder::new(self.images.blob_writer()?, flate2::Compression::new(6));
        let mut tar = Hashing::new(&mut gz);
        self.container_diff(&rec, pause, &mut tar)?;
        let (_, diff_id, _) = tar.finish();
        let blob = gz
            .finish()
            .map_err(io_err("compressing the layer"))?
            .finish()?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let bad = |e: oci_spec::OciSpecError| EngineError::Invalid(e.to_string());
        let mut config = base.config.clone();
        config.set_created(Some(now.clone()));
        config.set_config(Some(cfg));
        if let Some(a) = author {
            config.set_author(Some(a.to_string()));
        }
        let mut diff_ids = base.diff_ids().to_vec();
        diff_ids.push(diff_id);
        config.set_rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .map_err(bad)?,
        );
        let mut history = config.history().clone().unwrap_or_default();
        let mut h = HistoryBuilder::default().created(now).created_by(format!(
            "twinbox commit {} ({} isolation)",
            rec.name, rec.spec.isolation
        ));
        if let Some(m) = message {
            h = h.comment(m.to_string());
        }
        if let Some(a) = author {
            h = h.author(a.to_string());
        }
        history.push(h.build().map_err(bad)?);
        config.set_history(Some(history));
        let _l = self.images.lock()?;
        blob.persist(&self.images)?;
        let mut layers = base.manifest.layers().clone();
        layers.push(Descriptor::new(
            MediaType::ImageLayerGzip,
            blob.size,
            blob.digest
                .parse::<oci_spec::image::Digest>()
                .map_err(bad)?,
        ));
        let manifest = self.images.put_image(&config, layers)?;
        self.images.tag_manifest(&manifest, tag.as_deref())?;
        Ok(self.images.by_manifest(&manifest)?.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_like_a_dockerfile() {
        let mut c = oci_spec::image::Config::default();
        apply_change(&mut c, r#"CMD ["echo", "hi"]"#).unwrap();
        apply_change(&mut c, "ENTRYPOINT /bin/app --x").unwrap();
        apply_change(&mut c, "ENV A=1").unwrap();
        apply_change(&mut c, "ENV B two").unwrap();
        apply_change(&mut c, "WORKDIR /srv").unwrap();
        apply_change(&mut c, "EXPOSE 80 53/udp").unwrap();
        assert_eq!(c.cmd().clone().unwrap(), vec!["echo", "hi"]);
        assert_eq!(
            c.entrypoint().clone().unwrap(),
            vec!["/bin/sh", "-c", "/bin/app --x"]
        );
        assert_eq!(c.env().clone().unwrap(), vec!["A=1", "B=two"]);
        assert_eq!(c.working_dir().clone().unwrap(), "/srv");
        assert_eq!(c.exposed_ports().clone().unwrap(), vec!["80/tcp", "53/udp"]);
        assert!(apply_change(&mut c, "RUN rm -rf /").is_err());
        assert!(apply_change(&mut c, "CMD").is_err());
    }
}
