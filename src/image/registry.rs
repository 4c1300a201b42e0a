//! The OCI distribution API, client side: pull and push, with anonymous, HTTP basic
//! and bearer-token authentication, and credentials kept in Docker's `config.json`
//! (so existing `docker login`s are reused).
//!
//! Every blob is verified (digest and size) before it enters the store; blobs a failed
//! pull wrote are removed again; blobs already present are not fetched.

use super::blob::TempBlob;
use super::store::{sha256_digest, ImageError, Store};
use super::Reference;
use base64::Engine as _;
use oci_spec::image::{ImageIndex, ImageManifest};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A request body: bytes in memory, or a file streamed (a layer on push).
#[derive(Clone, Copy)]
enum Body<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn err(what: impl Into<String>) -> ImageError {
    ImageError::Registry(what.into())
}

/// Docker's config file: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
pub fn config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".docker/config.json"),
    }
}

fn read_config() -> serde_json::Value {
    std::fs::read(config_path())
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_else(|| serde_json::json!({}))
}

fn write_config(v: &serde_json::Value) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let p = config_path();
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| err(format!("{}: {e}", d.display())))?;
    }
    let data = serde_json::to_vec_pretty(v).expect("config serializes");
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, &data).map_err(|e| err(format!("{}: {e}", tmp.display())))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &p).map_err(|e| err(format!("{}: {e}", p.display())))
}

/// Stored credentials for a registry host.
pub fn credentials(host: &str) -> Option<(String, String)> {
    let c = read_config();
    let keys = [
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
    ];
    let auth = keys
        .iter()
        .find_map(|k| c["auths"][k]["auth"].as_str().map(String::from))?;
    let dec = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    let s = String::from_utf8(dec).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

pub fn save_credentials(host: &str, user: &str, pass: &str) -> Result<(), ImageError> {
    let mut c = read_config();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    if !c["auths"].is_object() {
        c["auths"] = serde_json::json!({});
    }
    c["auths"][host] = serde_json::json!({ "auth": auth });
    write_config(&c)
}

/// Returns whether there was something to forget.
pub fn forget_credentials(host: &str) -> Result<bool, ImageError> {
    let mut c = read_config();
    let had = c["auths"]
        .as_object_mut()
        .map(|m| m.remove(host).is_some())
        .unwrap_or(false);
    if had {
        write_config(&c)?;
    }
    Ok(had)
}

/// The API host of a reference's registry.
pub fn api_host(r: &Reference) -> String {
    if r.registry == "docker.io" {
        "registry-1.docker.io".into()
    } else {
        r.registry.clone()
    }
}

/// Plain HTTP for localhost registries (as Docker allows) or when asked.
fn scheme(host: &str, insecure: bool) -> &'static str {
    let h = host.split(':').next().unwrap_or(host);
    if insecure || h == "localhost" || h.starts_with("127.") || h == "[::1]" {
        "http"
    } else {
        "https"
    }
}

/// A session with one registry, for one repository.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    host: String,
    repo: String,
    creds: Option<(String, String)>,
    auth: Option<String>,
}

/// Never the password or the token: a `{:?}` in an error or a log must not leak them.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("repo", &self.repo)
            .field("user", &self.creds.as_ref().map(|c| &c.0))
            .field("authorized", &self.auth.is_some())
            .finish_non_exhaustive()
    }
}

fn parse_challenge(h: &str) -> (String, BTreeMap<String, String>) {
    let (kind, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, r)) = rest.split_once('=') else {
            break;
        };
        let r = r.trim_start();
        let (v, after) = if let Some(r) = r.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            (&r[..end], r.get(end + 1..).unwrap_or(""))
        } else {
            let end = r.find(',').unwrap_or(r.len());
            (&r[..end], &r[end..])
        };
        params.insert(k.trim().to_ascii_lowercase(), v.to_string());
        rest = after.trim_start_matches(',').trim();
    }
    (kind.to_ascii_lowercase(), params)
}

impl Client {
    pub fn new(r: &Reference, insecure: bool) -> Client {
        let host = api_host(r);
        Client {
            agent: ureq::AgentBuilder::new()
                .timeout_connect(std::time::Duration::from_secs(15))
                .redirects(5)
                .build(),
            base: format!("{}://{host}", scheme(&host, insecure)),
            creds: credentials(&r.registry).or_else(|| credentials(&host)),
            host,
            repo: r.repository.clone(),
            auth: None,
        }
    }

    pub fn with_credentials(mut self, user: &str, pass: &str) -> Client {
        self.creds = Some((user.into(), pass.into()));
        self
    }

    /// Answer an authentication challenge; false if there is nothing more to try.
    fn authenticate(&mut self, challenge: &str, push: bool) -> Result<bool, ImageError> {
        let (kind, p) = parse_challenge(challenge);
        let basic = self.creds.as_ref().map(|(u, pw)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pw}"))
            )
        });
        match kind.as_str() {
            "basic" => {
                let Some(b) = basic else { return Ok(false) };
                if self.auth.as_deref() == Some(b.as_str()) {
                    return Ok(false);
                }
                self.auth = Some(b);
                Ok(true)
            }
            "bearer" => {
                let realm = p
                    .get("realm")
                    .ok_or_else(|| err("bearer challenge without a realm"))?;
                let scope = p.get("scope").cloned().unwrap_or_else(|| {
                    format!(
                        "repository:{}:{}",
                        self.repo,
                        if push { "pull,push" } else { "pull" }
                    )
                });
                let mut req = self.agent.get(realm).query("scope", &scope);
                if let Some(s) = p.get("service") {
                    req = req.query("service", s);
                }
                if let Some(b) = &basic {
                    req = req.set("Authorization", b);
                }
                let resp = req.call().map_err(|e| match e {
                    ureq::Error::Status(401, _) | ureq::Error::Status(403, _) => err(format!(
                        "{}: unauthorized: the credentials were refused",
                        self.host
                    )),
                    e => err(format!("token from {realm}: {e}")),
                })?;
                let text = resp
                    .into_string()
                    .map_err(|e| err(format!("token from {realm}: {e}")))?;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| err(format!("token from {realm}: {e}")))?;
                let t = v["token"]
                    .as_str()
                    .or(v["access_token"].as_str())
                    .ok_or_else(|| err(format!("no token from {realm}")))?;
                let b = format!("Bearer {t}");
                if self.auth.as_deref() == Some(b.as_str()) {
                    return Ok(false);
                }
                self.auth = Some(b);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// One request with authentication handled. `path` is relative to /v2/<repo>/ or
    /// a full URL (an upload location).
    fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Body<'_>>,
        push: bool,
    ) -> Result<ureq::Response, ImageError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            format!("{}/v2/{}/{path}", self.base, self.repo)
        };
        for _ in 0..3 {
            let mut req = self.agent.request(method, &url);
            for (k, v) in headers {
                req = req.set(k, v);
            }
            if let Some(a) = &self.auth {
                req = req.set("Authorization", a);
            }
            let r = match body {
                Some(Body::Bytes(b)) => req.send_bytes(b),
                Some(Body::File(p)) => {
                    // Opened for each attempt: a retry after a 401 sends it again.
                    let f =
                        std::fs::File::open(p).map_err(|e| err(format!("{}: {e}", p.display())))?;
                    let len = f
                        .metadata()
                        .map_err(|e| err(format!("{}: {e}", p.display())))?
                        .len();
                    req.set("Content-Length", &len.to_string())
                        .send(std::io::BufReader::with_capacity(1 << 20, f))
                }
                None => req.call(),
            };
            match r {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) => {
                    let ch = resp.header("www-authenticate").unwrap_or("").to_string();
                    if !self.authenticate(&ch, push)? {
                        return Err(err(format!(
                            "{}: unauthorized: {}",
                            self.host,
                            if self.creds.is_some() {
                                "the credentials were refused"
                            } else {
                                "authentication required (twinbox login)"
                            }
                        )));
                    }
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let body = resp.into_string().unwrap_or_default();
                    return Err(err(format!(
                        "{method} {url}: HTTP {code} {}",
                        body.lines()
                            .next()
                            .unwrap_or("")
                            .chars()
                            .take(200)
                            .collect::<String>()
                    )));
                }
                Err(e) => return Err(err(e.to_string())),
            }
        }
        Err(err(format!("{url}: authentication did not succeed")))
    }

    /// Check credentials against /v2/ (login).
    pub fn ping(&mut self) -> Result<(), ImageError> {
        self.call("GET", "/v2/", &[], None, false).map(|_| ())
    }

    fn fetch_manifest(&mut self, reference: &str) -> Result<(Vec<u8>, String), ImageError> {
        let resp = self.call(
            "GET",
            &format!("manifests/{reference}"),
            &[("Accept", MANIFEST_TYPES)],
            None,
            false,
        )?;
        let ct = resp.content_type().to_string();
        let mut body = Vec::new();
        resp.into_reader()
            .take(4 << 20)
            .read_to_end(&mut body)
            .map_err(|e| err(format!("manifest: {e}")))?;
        if reference.starts_with("sha256:") {
            let got = sha256_digest(&body);
            if got != reference {
                return Err(ImageError::DigestMismatch {
                    digest: reference.to_string(),
                    actual: got,
                });
            }
        }
        Ok((body, ct))
    }

    /// Download a blob into a temp blob of `store`, checked against its descriptor.
    fn fetch_blob(
        &mut self,
        store: &Store,
        digest: &str,
        size: u64,
        pb: &indicatif::ProgressBar,
    ) -> Result<TempBlob, ImageError> {
        let resp = self.call("GET", &format!("blobs/{digest}"), &[], None, false)?;
        let mut body = pb.wrap_read(resp.into_reader().take(size + 1));
        let t = store.temp_blob(&mut body, &format!("blob {digest} from {}", self.host))?;
        if t.size != size {
            return Err(err(format!(
                "blob {digest}: {} bytes received, the manifest says {size}",
                t.size
            )));
        }
        t.expect(digest, Some(size))?;
        Ok(t)
    }

    /// Pull `reference` (tag or digest) into the store. Returns the manifest digest.
    /// Callers hold the store lock.
    pub fn pull(
        &mut self,
        store: &Store,
        reference: &str,
        quiet: bool,
    ) -> Result<String, ImageError> {
        let (mut body, mut ct) = self.fetch_manifest(reference)?;
        if ct.contains("index") || ct.contains("manifest.list") {
            let idx = ImageIndex::from_reader(&body[..]).map_err(|e| err(format!("index: {e}")))?;
            let m = idx
                .manifests()
                .iter()
                .find(|m| {
                    m.platform().as_ref().is_some_and(|p| {
                        p.architecture().to_string() == "amd64" && p.os().to_string() == "linux"
                    })
                })
                .ok_or_else(|| err(format!("{reference}: no linux/amd64 image in the index")))?;
            let d = m.digest().to_string();
            (body, ct) = self.fetch_manifest(&d)?;
        }
        let _ = ct;
        let manifest =
            ImageManifest::from_reader(&body[..]).map_err(|e| err(format!("manifest: {e}")))?;
        let mut written: Vec<String> = Vec::new();
        let result = (|| -> Result<String, ImageError> {
            let mp = indicatif::MultiProgress::new();
            if quiet {
                mp.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let mut blobs = vec![manifest.config().clone()];
            blobs.extend(manifest.layers().iter().cloned());
            for d in blobs {
                let digest = d.digest().to_string();
                let short = digest.trim_start_matches("sha256:")[..12].to_string();
                if store.verify_blob(&digest).is_ok() {
                    if !quiet {
                        mp.println(format!("{short}: already exists")).ok();
                    }
                    continue;
                }
                // A damaged copy is replaced.
                let _ = std::fs::remove_file(store.blob_path(&digest));
                let pb = mp.add(indicatif::ProgressBar::new(d.size()));
                pb.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{prefix}: {bar:30} {bytes}/{total_bytes}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                pb.set_prefix(short.clone());
                let blob = self.fetch_blob(store, &digest, d.size(), &pb)?;
                pb.finish_with_message("done");
                if blob.persist(store)? {
                    written.push(digest.clone());
                }
            }
            store.put_blob(&body)
        })();
        if result.is_err() {
            for d in &written {
                let _ = std::fs::remove_file(store.blob_path(d));
            }
        }
        result
    }

    /// Push an image (manifest bytes as stored) under `tag`. Returns the digest.
    /// `mount_from`: other repositories of this registry that may hold the blobs
    /// (the registry links them instead of taking an upload). `log` gets one line per
    /// blob: pushed, mounted or already there.
    pub fn push(
        &mut self,
        store: &Store,
        manifest_digest: &str,
        tag: &str,
        mount_from: &[String],
        log: &mut Vec<String>,
    ) -> Result<String, ImageError> {
        let body = store.read_blob(manifest_digest)?;
        let manifest =
            ImageManifest::from_reader(&body[..]).map_err(|e| err(format!("manifest: {e}")))?;
        let mut blobs = vec![manifest.config().clone()];
        blobs.extend(manifest.layers().iter().cloned());
        for d in blobs {
            let digest = d.digest().to_string();
            let short = digest.trim_start_matches("sha256:")[..12].to_string();
            if self
                .call("HEAD", &format!("blobs/{digest}"), &[], None, true)
                .is_ok()
            {
                log.push(format!("{short}: layer already exists"));
                continue;
            }
            let mut upload = None;
            let mut mounted = false;
            for from in mount_from {
                let resp = self.call(
                    "POST",
                    &format!("blobs/uploads/?mount={digest}&from={from}"),
                    &[],
                    Some(Body::Bytes(&[])),
                    true,
                )?;
                if resp.status() == 201 {
                    log.push(format!("{short}: mounted from {from}"));
                    mounted = true;
                    break;
                }
                // 202: the registry opened an upload session instead; use it.
                upload = Some(resp);
            }
            if mounted {
                continue;
            }
            store.verify_blob(&digest)?;
            let resp = match upload {
                Some(r) => r,
                None => self.call("POST", "blobs/uploads/", &[], Some(Body::Bytes(&[])), true)?,
            };
            let loc = resp
                .header("location")
                .ok_or_else(|| err("the registry gave no upload location"))?
                .to_string();
            let loc = if loc.starts_with('/') {
                format!("{}{loc}", self.base)
            } else {
                loc
            };
            let sep = if loc.contains('?') { '&' } else { '?' };
            self.call(
                "PUT",
                &format!("{loc}{sep}digest={digest}"),
                &[("Content-Type", "application/octet-stream")],
                Some(Body::File(&store.blob_path(&digest))),
                true,
            )?;
            log.push(format!("{short}: pushed"));
        }
        let ct = manifest
            .media_type()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        self.call(
            "PUT",
            &format!("manifests/{tag}"),
            &[("Content-Type", &ct)],
            Some(Body::Bytes(&body)),
            true,
        )?;
        Ok(manifest_digest.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_password_or_token() {
        let r = crate::image::reference::Reference::parse("registry.example:5000/busybox").unwrap();
        let mut c = Client::new(&r, true).with_credentials("alice", "hunter2-secret");
        c.auth = Some("Bearer tok-abc123".into());
        let d = format!("{c:?}");
        assert!(
            d.contains("alice") && !d.contains("hunter2") && !d.contains("tok-abc123"),
            "{d}"
        );
    }

    #[test]
    fn challenges_parse() {
        let (k, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(k, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        let (k, p) = parse_challenge(r#"Basic realm="test""#);
        assert_eq!((k.as_str(), p["realm"].as_str()), ("basic", "test"));
    }

    #[test]
    fn localhost_is_plain_http() {
        assert_eq!(scheme("127.0.0.1:5000", false), "http");
        assert_eq!(scheme("localhost:5000", false), "http");
        assert_eq!(scheme("registry-1.docker.io", false), "https");
        assert_eq!(scheme("reg.example:5000", true), "http");
    }
}
