//! Pull and push against a real registry (Debian's docker-registry), started by the
//! test inside its own network namespace on 127.0.0.1 with its storage in the test's
//! directory: once open, once behind htpasswd basic auth.

mod common;
use common::foreign::*;
use common::*;
use std::process::{Child, Command, Stdio};

struct Registry {
    child: Child,
    data: std::path::PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry(tb: &Tb, port: u16, htpasswd: Option<(&str, &str)>) -> Registry {
    registry_at(tb, "127.0.0.1", port, htpasswd)
}

fn registry_at(tb: &Tb, addr: &str, port: u16, htpasswd: Option<(&str, &str)>) -> Registry {
    let bin = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect(
            "docker-registry is needed (apt-get install docker-registry; scripts/setup.sh does)",
        );
    let dir = tb.dir.path().join(format!("registry-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}:{port}\n",
        dir.join("data").display()
    );
    if let Some((u, p)) = htpasswd {
        let o = Command::new("htpasswd")
            .args(["-Bbn", u, p])
            .output()
            .expect("htpasswd (apache2-utils) is needed for the basic-auth registry");
        std::fs::write(dir.join("htpasswd"), &o.stdout).unwrap();
        cfg += &format!(
            "auth:\n  htpasswd:\n    realm: twinbox-test\n    path: {}\n",
            dir.join("htpasswd").display()
        );
    }
    std::fs::write(dir.join("config.yml"), cfg).unwrap();
    let child = Command::new("nsenter")
        .arg(format!("--net={}", tb.netns_path()))
        .arg(bin)
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let r = Registry {
        child,
        data: dir.join("data"),
    };
    assert!(
        eventually(10, || tb
            .host(&["timeout", "2", "busybox", "nc", addr, &port.to_string()])
            .status
            .success()),
        "the registry did not start"
    );
    r
}

fn manifest_of(tb: &Tb, r: &str) -> String {
    tb.image_field(r, "Manifest")
}

#[test]
fn push_rmi_pull_gives_the_same_digest_and_a_corrupt_blob_is_refused() {
    let tb = Tb::new();
    let reg = registry(&tb, 5000, None);
    tb.ok(&["tag", "busybox", "127.0.0.1:5000/team/bb:v1"]);
    let digest = manifest_of(&tb, "busybox");
    let out = tb.ok(&["push", "127.0.0.1:5000/team/bb:v1"]);
    assert!(out.contains(&digest), "{out}");
    assert_eq!(
        out.matches(": pushed").count(),
        2,
        "config and layer uploaded: {out}"
    );
    let out = tb.ok(&["push", "127.0.0.1:5000/team/bb:v1"]);
    assert_eq!(
        out.matches("already exists").count(),
        2,
        "nothing uploaded twice: {out}"
    );
    // another repository of the same registry: the blobs are mounted, not uploaded
    tb.ok(&["tag", "busybox", "127.0.0.1:5000/other/bb:v1"]);
    let out = tb.ok(&["push", "127.0.0.1:5000/other/bb:v1"]);
    assert_eq!(out.matches("mounted from team/bb").count(), 2, "{out}");
    tb.ok(&["rmi", "127.0.0.1:5000/other/bb:v1"]);
    tb.ok(&["rmi", "127.0.0.1:5000/team/bb:v1"]);
    tb.ok(&["rmi", "busybox"]);
    assert_eq!(tb.blob_count(), 0);
    let out = tb.ok(&["pull", "-q", "127.0.0.1:5000/team/bb:v1"]);
    assert!(out.contains(&digest), "{out}");
    assert_eq!(manifest_of(&tb, "127.0.0.1:5000/team/bb:v1"), digest);
    assert_eq!(
        tb.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "127.0.0.1:5000/team/bb:v1",
            "echo",
            "pulled"
        ]),
        "pulled\n"
    );
    // podman pulls the same image: the same digest, id and history as twinbox shows
    let name = "127.0.0.1:5000/team/bb:v1";
    pok(&tb, &["pull", "-q", "--tls-verify=false", name]);
    let fmt = "{{.Digest}} {{.ID}}";
    let theirs = pok(
        &tb,
        &["images", "--digests", "--no-trunc", "--format", fmt, name],
    );
    let ours = tb.ok(&["images", "--digests", "--no-trunc", "--format", fmt, name]);
    assert_eq!(theirs.trim(), ours.trim(), "images --digests");
    // podman's --format prints sizes human-readable whatever --human says: compare
    // its JSON (bytes) with ours in bytes.
    let theirs: Vec<serde_json::Value> =
        serde_json::from_str(&pok(&tb, &["history", "--format", "json", name])).unwrap();
    let theirs: Vec<String> = theirs
        .iter()
        .map(|h| format!("{} {}", h["CreatedBy"].as_str().unwrap(), h["size"]))
        .collect();
    let ours = tb.ok(&[
        "history",
        "--human=false",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}} {{.Size}}",
        name,
    ]);
    assert_eq!(ours.lines().collect::<Vec<_>>(), theirs, "history");
    // by digest: no name, the same image
    tb.ok(&["rmi", "127.0.0.1:5000/team/bb:v1"]);
    tb.ok(&["pull", "-q", &format!("127.0.0.1:5000/team/bb@{digest}")]);
    assert_eq!(tb.ok(&["images", "-q"]).lines().count(), 1);
    // a blob corrupted in the registry's storage is refused, nothing of it kept
    tb.ok(&["image", "prune", "-a"]);
    assert_eq!(tb.blob_count(), 0);
    let blobs = reg.data.join("docker/registry/v2/blobs/sha256");
    let mut corrupted = 0;
    for shard in std::fs::read_dir(&blobs).unwrap().flatten() {
        for b in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let data = b.path().join("data");
            let mut d = std::fs::read(&data).unwrap();
            if d.len() > 100_000 {
                let n = d.len() / 2;
                d[n] ^= 0xff;
                std::fs::write(&data, d).unwrap();
                corrupted += 1;
            }
        }
    }
    assert_eq!(corrupted, 1, "the layer");
    tb.fails(&["pull", "-q", "127.0.0.1:5000/team/bb:v1"], 125, "corrupt");
    assert_eq!(tb.ok(&["images", "-q"]), "", "nothing tagged");
    assert_eq!(tb.blob_count(), 0, "nothing half-written left in the store");
    tb.fails(&["pull", "-q", "127.0.0.1:5000/team/nosuch:v1"], 125, "404");
    drop(reg);
    tb.assert_clean(&[]);
}

#[test]
fn basic_auth_login_and_logout() {
    let tb = Tb::new();
    let reg = registry(&tb, 5001, Some(("alice", "s3cret")));
    tb.ok(&["tag", "busybox", "127.0.0.1:5001/bb:v1"]);
    tb.fails(
        &["push", "127.0.0.1:5001/bb:v1"],
        125,
        "authentication required",
    );
    tb.fails(
        &["login", "-u", "alice", "-p", "wrong", "127.0.0.1:5001"],
        125,
        "refused",
    );
    let o = tb.with_stdin(
        &["login", "-u", "alice", "--password-stdin", "127.0.0.1:5001"],
        b"s3cret\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = tb.dir.path().join("docker-config/config.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    assert!(
        v["auths"]["127.0.0.1:5001"]["auth"].is_string(),
        "Docker's format: {v}"
    );
    tb.ok(&["push", "127.0.0.1:5001/bb:v1"]);
    tb.ok(&["rmi", "127.0.0.1:5001/bb:v1"]);
    tb.ok(&["pull", "-q", "127.0.0.1:5001/bb:v1"]);
    tb.ok(&["logout", "127.0.0.1:5001"]);
    tb.ok(&["rmi", "127.0.0.1:5001/bb:v1"]);
    tb.fails(
        &["pull", "-q", "127.0.0.1:5001/bb:v1"],
        125,
        "authentication required",
    );
    drop(reg);
    tb.assert_clean(&[]);
}

#[test]
fn insecure_registries_come_from_the_settings_file() {
    // A registry on an address that is not loopback speaks plain HTTP only: twinbox
    // refuses it (HTTPS) until the settings name it, by HOST:PORT or by network.
    let tb = Tb::new();
    let o = tb.host(&["ip", "addr", "add", "10.77.0.1/32", "dev", "lo"]);
    assert!(
        o.status.success(),
        "ip addr add: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let reg = registry_at(&tb, "10.77.0.1", 5002, None);
    let name = "10.77.0.1:5002/team/bb:v1";
    tb.ok(&["tag", "busybox", name]);
    let o = tb.out(&["push", name]);
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("https://10.77.0.1:5002"), "{err}");
    let settings = tb.dir.path().join("daemon.json");
    std::fs::write(&settings, r#"{"insecure-registries": ["10.77.0.1:5002"]}"#).unwrap();
    let out = tb.ok(&["push", name]);
    assert!(out.contains(": pushed"), "{out}");
    tb.ok(&["rmi", name]);
    // by network
    std::fs::write(&settings, r#"{"insecure-registries": ["10.77.0.0/16"]}"#).unwrap();
    let out = tb.ok(&["pull", "-q", name]);
    assert!(out.contains(name), "{out}");
    // a registry outside the network is not covered; a typo in the file is an error
    std::fs::write(&settings, r#"{"insecure-registries": ["10.78.0.0/16"]}"#).unwrap();
    tb.fails(&["pull", "-q", name], 125, "https://10.77.0.1:5002");
    std::fs::write(&settings, r#"{"insecure-registry": ["10.77.0.1:5002"]}"#).unwrap();
    tb.fails(
        &["pull", "-q", name],
        125,
        "unknown field `insecure-registry`",
    );
    tb.ok(&["rmi", name]);
    drop(reg);
    tb.assert_clean(&[]);
}
