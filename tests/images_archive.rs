//! Moving images in and out: save/load in docker-archive and OCI layout, tag, rmi with
//! shared layers, prune, history, import/export, system df, and hostile archives.

mod common;
use common::*;
use std::process::Command;

fn image_id(tb: &Tb, r: &str) -> String {
    tb.image_field(r, "Id")
}

#[test]
fn save_and_load_both_formats_keep_the_image() {
    let tb = Tb::new();
    let id = image_id(&tb, "busybox");
    tb.ok(&["tag", "busybox", "example.org/team/bb:v1"]);
    let dir = tb.dir.path();
    let docker = dir.join("d.tar");
    let oci = dir.join("o.tar");
    tb.ok(&[
        "save",
        "-o",
        docker.to_str().unwrap(),
        "example.org/team/bb:v1",
    ]);
    tb.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        oci.to_str().unwrap(),
        "busybox",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&tb.ok(&["image", "inspect", "busybox"])).unwrap();
    let manifest = v[0]["Manifest"].as_str().unwrap().to_string();
    // docker-archive: Docker's manifest.json shape
    let list = Command::new("tar").arg("tf").arg(&docker).output().unwrap();
    let names = stdout(&list);
    for n in [
        "manifest.json",
        "repositories",
        &format!("{}.json", &id[7..]),
    ] {
        assert!(names.lines().any(|l| l == n), "{n} in {names}");
    }
    tb.ok(&["rmi", "example.org/team/bb:v1"]);
    tb.ok(&["rmi", "busybox"]);
    assert_eq!(tb.ok(&["images", "-q"]), "");
    assert_eq!(tb.blob_count(), 0, "rmi of the last image leaves no blob");
    // OCI layout: the manifest digest survives the trip
    let out = tb.ok(&["load", "-i", oci.to_str().unwrap()]);
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&tb.ok(&["image", "inspect", "busybox"])).unwrap();
    assert_eq!(v[0]["Manifest"].as_str().unwrap(), manifest);
    assert_eq!(v[0]["Id"].as_str().unwrap(), id);
    // docker-archive: same image id, the name it was saved under
    let out = tb.ok(&["load", "-i", docker.to_str().unwrap()]);
    assert!(
        out.contains("Loaded image: example.org/team/bb:v1"),
        "{out}"
    );
    assert_eq!(image_id(&tb, "example.org/team/bb:v1"), id);
    assert_eq!(
        tb.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "example.org/team/bb:v1",
            "echo",
            "ran"
        ]),
        "ran\n"
    );
    // from standard input, gzip'ed
    let gz = dir.join("o.tar.gz");
    assert!(std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -c {} > {}", oci.display(), gz.display()))
        .status()
        .unwrap()
        .success());
    tb.ok(&["rmi", "-f", "busybox"]);
    let o = tb.with_stdin(&["load"], &std::fs::read(&gz).unwrap());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tb.assert_clean(&[]);
}

#[test]
fn rmi_keeps_shared_layers_and_refuses_images_in_use() {
    let tb = Tb::new();
    let dir = tb.dir.path();
    let docker = dir.join("d.tar");
    tb.ok(&["save", "-o", docker.to_str().unwrap(), "busybox"]);
    tb.ok(&["tag", "busybox", "keep:1"]);
    // the docker-archive copy stores the layer uncompressed: another blob, same diff id
    tb.ok(&["rmi", "busybox"]); // untag only: keep:1 still names it
    assert!(tb.ok(&["images"]).contains("keep"));
    tb.ok(&["load", "-i", docker.to_str().unwrap()]);
    tb.ok(&["run", "--rm", "--network", "none", "busybox", "true"]);
    let layers = tb.root().join("images/layers");
    assert_eq!(
        std::fs::read_dir(&layers).unwrap().count(),
        1,
        "one unpacked layer, shared"
    );
    let id = tb
        .ok(&["create", "--network", "none", "keep:1", "true"])
        .trim()
        .to_string();
    tb.fails(&["rmi", "keep:1"], 1, "being used by stopped container");
    tb.ok(&["rmi", "-f", "keep:1"]);
    assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 1, "still used");
    tb.ok(&["start", "-a", &id]);
    tb.ok(&["rm", &id]);
    tb.ok(&["rmi", "busybox"]);
    assert_eq!(
        std::fs::read_dir(&layers).unwrap().count(),
        0,
        "the last user went"
    );
    tb.fails(&["rmi", "nosuchimage"], 1, "no such image");
    tb.assert_clean(&[]);
}

#[test]
fn cp_reaches_a_stopped_container_and_stays_in_its_root() {
    // A stopped container's root is mounted privately by a helper that chroots into
    // it: its symlinks (absolute or climbing) resolve inside, never on the host.
    let tb = Tb::new();
    tb.ok(&[
        "run",
        "--name",
        "stopped",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo inside > /root/f; ln -s /etc /root/abs; ln -s ../../../../../../etc /root/up",
    ]);
    let out = tb.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    tb.ok(&["cp", "stopped:/root/f", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "inside\n");
    tb.ok(&["cp", "stopped:/root/up/passwd", out.to_str().unwrap()]);
    let passwd = std::fs::read_to_string(out.join("passwd")).unwrap();
    let host = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    assert!(
        passwd.starts_with("root:x:0:0:root:/root:/bin/sh\n") && passwd != host,
        "the container's /etc/passwd, not the host's: {passwd:?}"
    );
    let marker = tb.dir.path().join("marker");
    std::fs::write(&marker, b"from-host").unwrap();
    let name = format!("twinbox-cp-{}", std::process::id());
    let named = tb.dir.path().join(&name);
    std::fs::copy(&marker, &named).unwrap();
    tb.ok(&["cp", named.to_str().unwrap(), "stopped:/root/abs/"]);
    tb.ok(&["cp", named.to_str().unwrap(), "stopped:/root/up/"]);
    assert!(
        !std::path::Path::new("/etc").join(&name).exists(),
        "cp into a stopped container wrote the host's /etc"
    );
    let back = tb.dir.path().join("back");
    tb.ok(&[
        "cp",
        &format!("stopped:/etc/{name}"),
        back.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "from-host");
    tb.fails(
        &["cp", "stopped:/nonexistent", out.to_str().unwrap()],
        125,
        "no such file",
    );
    // what cp put in shows as a change, and the workload sees it when started again
    assert!(tb
        .ok(&["diff", "stopped"])
        .contains(&format!("A /etc/{name}")));
    tb.ok(&["rm", "stopped"]);
    tb.assert_clean(&[]);
}

#[test]
fn export_import_history_prune_and_df() {
    let tb = Tb::new();
    tb.ok(&[
        "run",
        "--name",
        "src",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo data > /root/new.txt; rm /etc/group",
    ]);
    let tarball = tb.dir.path().join("fs.tar");
    tb.ok(&["export", "-o", tarball.to_str().unwrap(), "src"]);
    let list = stdout(
        &std::process::Command::new("tar")
            .arg("tf")
            .arg(&tarball)
            .output()
            .unwrap(),
    );
    assert!(
        list.contains("./root/new.txt") && list.contains("./bin/busybox"),
        "{list}"
    );
    assert!(
        !list.contains("./etc/group"),
        "the deletion is exported: {list}"
    );
    tb.ok(&[
        "import",
        "-c",
        "CMD [\"cat\", \"/root/new.txt\"]",
        "-c",
        "ENV MODE=imported",
        tarball.to_str().unwrap(),
        "fromexport:v1",
    ]);
    assert_eq!(
        tb.ok(&["run", "--rm", "--network", "none", "fromexport:v1"]),
        "data\n"
    );
    assert_eq!(
        tb.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "fromexport:v1",
            "sh",
            "-c",
            "echo $MODE"
        ]),
        "imported\n"
    );
    let h = tb.ok(&["history", "--no-trunc", "fromexport:v1"]);
    assert!(h.contains("twinbox import"), "{h}");
    let df = tb.ok(&["system", "df"]);
    assert!(df.contains("Images") && df.contains("Containers"), "{df}");
    tb.fails(&["import", "/nonexistent.tar"], 125, "cannot read");
    let junk = tb.dir.path().join("junk");
    std::fs::write(
        &junk,
        b"this is not a tarball at all, not even close ......",
    )
    .unwrap();
    let before = tb.blob_count();
    tb.fails(
        &["import", junk.to_str().unwrap(), "junk:1"],
        125,
        "not a tar archive",
    );
    assert_eq!(tb.blob_count(), before);
    tb.fails(&["export", "nosuchcontainer"], 125, "no such container");
    // diff, as Docker prints it: the added file, its directory, the deletion
    let diff = tb.ok(&["diff", "src"]);
    for want in [
        "C /root\n",
        "A /root/new.txt\n",
        "C /etc\n",
        "D /etc/group\n",
    ] {
        assert!(diff.contains(want), "{want:?} in {diff}");
    }
    tb.fails(&["diff", "nosuchcontainer"], 125, "no such container");
    tb.ok(&["rm", "src"]);
    tb.ok(&["image", "prune", "-a"]);
    assert_eq!(tb.ok(&["images", "-q"]), "");
    assert_eq!(tb.blob_count(), 0);
    tb.assert_clean(&[]);
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    let tb = Tb::new();
    let dir = tb.dir.path();
    // an entry climbing out of the archive
    let evil = dir.join("evil.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_entry_type(tar::EntryType::Regular);
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"../../escaped");
    h.set_cksum();
    b.append(&h, &b"hi"[..]).unwrap();
    std::fs::write(&evil, b.into_inner().unwrap()).unwrap();
    tb.fails(&["load", "-i", evil.to_str().unwrap()], 125, "climbs out");
    assert!(!dir.join("../escaped").exists() && !std::path::Path::new("/tmp/escaped").exists());
    // a layer whose content does not match the config's diff id
    let good = dir.join("good.tar");
    tb.ok(&["save", "-o", good.to_str().unwrap(), "busybox"]);
    tb.ok(&["rmi", "busybox"]);
    let bad = dir.join("bad.tar");
    let mut out = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(std::fs::File::open(&good).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        let path = e.path().unwrap().into_owned();
        if path.to_string_lossy().ends_with("layer.tar") {
            let n = data.len();
            data[n / 2] ^= 0xff; // one flipped byte
        }
        let mut h = e.header().clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.append_data(&mut h, &path, &data[..]).unwrap();
    }
    std::fs::write(&bad, out.into_inner().unwrap()).unwrap();
    tb.fails(&["load", "-i", bad.to_str().unwrap()], 125, "corrupt");
    assert_eq!(tb.ok(&["images", "-q"]), "", "nothing tagged");
    assert_eq!(tb.blob_count(), 0, "nothing half-written left in the store");
    // not an archive at all
    let junk = dir.join("junk.tar");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    tb.fails(
        &["load", "-i", junk.to_str().unwrap()],
        125,
        "invalid image archive",
    );
    tb.fails(&["save", "nosuchimage"], 125, "no such image");
    tb.fails(
        &["save", "--format", "zip", "-o", "/tmp/x.tar", "busybox"],
        125,
        "unknown archive format",
    );
    tb.assert_clean(&[]);
}

#[test]
fn commit_turns_a_containers_changes_into_a_layer() {
    let tb = Tb::new();
    tb.ok(&[
        "run",
        "--name",
        "c1",
        "--network",
        "none",
        "-e",
        "FOO=bar",
        "-w",
        "/srv",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /srv /opt/x; echo committed > /srv/file; echo o > /opt/x/f; rm /etc/group",
    ]);
    let id = tb.ok(&[
        "commit",
        "-m",
        "my change",
        "-a",
        "me",
        "-c",
        "CMD [\"cat\", \"/srv/file\"]",
        "c1",
        "mine:v1",
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(
        tb.ok(&["run", "--rm", "--network", "none", "mine:v1"]),
        "committed\n"
    );
    let out = tb.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "mine:v1",
        "sh",
        "-c",
        "[ -e /etc/group ] && echo group-still-there; echo $FOO; pwd; cat /opt/x/f",
    ]);
    assert_eq!(
        out, "bar\n/srv\no\n",
        "deletion, env, workdir and new files carried over"
    );
    let h = tb.ok(&["history", "mine:v1"]);
    assert!(
        h.lines().nth(1).unwrap().contains("twinbox commit c1") && h.contains("my change"),
        "{h}"
    );
    // a running container is paused while its changes are read, then goes on
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "c2",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo live > /live; exec sleep 60",
    ]);
    assert!(eventually(5, || tb
        .out(&["exec", "c2", "cat", "/live"])
        .status
        .success()));
    tb.ok(&["commit", "c2", "live:1"]);
    assert_eq!(
        tb.ok(&["run", "--rm", "--network", "none", "live:1", "cat", "/live"]),
        "live\n"
    );
    assert!(
        tb.ok(&["ps"]).contains("c2"),
        "still running after the commit"
    );
    tb.fails(&["commit", "nosuch", "x:1"], 125, "no such container");
    tb.fails(
        &["commit", "-c", "RUN true", "c1", "x:1"],
        125,
        "not supported",
    );
    tb.ok(&["rm", "-f", "c1", "c2"]);
    tb.assert_clean(&[]);
}

#[test]
fn zstd_layers_load_unpack_and_import() {
    use sha2::Digest;
    let tb = Tb::new();
    let dir = tb.dir.path();
    let oci = dir.join("o.tar");
    tb.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        oci.to_str().unwrap(),
        "busybox",
    ]);
    tb.ok(&["rmi", "busybox"]);
    // Rewrite the layout with its layer recompressed as zstd (zstd CLI).
    let x = dir.join("x");
    std::fs::create_dir_all(&x).unwrap();
    assert!(Command::new("tar")
        .arg("xf")
        .arg(&oci)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap()
        .success());
    let sha = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    let blobs = x.join("blobs/sha256");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("index.json")).unwrap()).unwrap();
    let mdig = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(&mdig)).unwrap()).unwrap();
    let ldig = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let gz = std::fs::read(blobs.join(&ldig)).unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut tar).unwrap();
    std::fs::write(dir.join("layer.tar"), &tar).unwrap();
    assert!(Command::new("zstd")
        .args(["-q", "-f"])
        .arg(dir.join("layer.tar"))
        .arg("-o")
        .arg(dir.join("layer.zst"))
        .status()
        .expect("zstd (apt-get install zstd)")
        .success());
    let zst = std::fs::read(dir.join("layer.zst")).unwrap();
    std::fs::remove_file(blobs.join(&ldig)).unwrap();
    std::fs::write(blobs.join(sha(&zst)), &zst).unwrap();
    manifest["layers"][0]["digest"] = format!("sha256:{}", sha(&zst)).into();
    manifest["layers"][0]["size"] = zst.len().into();
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd".into();
    let m = serde_json::to_vec(&manifest).unwrap();
    std::fs::remove_file(blobs.join(&mdig)).unwrap();
    std::fs::write(blobs.join(sha(&m)), &m).unwrap();
    let mut index = index;
    index["manifests"][0]["digest"] = format!("sha256:{}", sha(&m)).into();
    index["manifests"][0]["size"] = m.len().into();
    std::fs::write(x.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let zoci = dir.join("z.tar");
    assert!(Command::new("tar")
        .arg("cf")
        .arg(&zoci)
        .arg("-C")
        .arg(&x)
        .arg(".")
        .status()
        .unwrap()
        .success());
    tb.ok(&["load", "-i", zoci.to_str().unwrap()]);
    assert_eq!(
        tb.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "echo",
            "zstd-layer"
        ]),
        "zstd-layer\n"
    );
    let h = tb.ok(&["history", "-H=false", "busybox"]);
    assert!(
        h.contains(&tar.len().to_string()),
        "uncompressed size in the history: {h}"
    );
    // and a zstd tarball imports
    tb.ok(&[
        "import",
        dir.join("layer.zst").to_str().unwrap(),
        "fromzstd:1",
    ]);
    assert_eq!(
        tb.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "fromzstd:1",
            "echo",
            "ok"
        ]),
        "ok\n"
    );
    tb.assert_clean(&[]);
}

#[test]
fn small_commands_refuse_bad_input_with_one_line() {
    let tb = Tb::new();
    tb.fails(
        &["tag", "busybox", "Bad Name"],
        125,
        "invalid image reference",
    );
    tb.fails(&["tag", "nosuchimage", "x:1"], 125, "no such image");
    tb.fails(&["history", "nosuchimage"], 125, "no such image");
    tb.fails(&["port", "nosuchcontainer"], 125, "no such container");
    tb.fails(&["pull", "Bad Name"], 125, "invalid image reference");
    tb.fails(&["push", "nosuchimage:1"], 125, "no such image");
    tb.fails(&["login", "127.0.0.1:5999"], 125, "-u USERNAME");
    tb.fails(
        &["login", "-u", "a", "127.0.0.1:5999"],
        125,
        "--password-stdin",
    );
    let out = tb.ok(&["logout", "127.0.0.1:5999"]);
    assert!(out.contains("Not logged in"), "{out}");
    tb.fails(&["load", "-i", "/nonexistent.tar"], 125, "cannot read");
    tb.fails(&["image", "prune", "--bogus"], 125, "unexpected argument");
    assert_eq!(
        tb.ok(&["images", "-q"]).lines().count(),
        1,
        "only busybox, made by the first tag attempt"
    );
    tb.assert_clean(&[]);
}

#[test]
fn a_damaged_stored_blob_never_makes_an_archive() {
    // save streams blobs from the store and checks each against its digest on the
    // way: a flipped byte fails the save, and no archive is left at the path.
    let tb = Tb::new();
    let v: serde_json::Value =
        serde_json::from_str(&tb.ok(&["image", "inspect", "busybox"])).unwrap();
    let layer = v[0]["RootFS"]["Layers"][0].as_str().map(String::from);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tb.root().join(format!(
            "images/blobs/sha256/{}",
            v[0]["Manifest"].as_str().unwrap().trim_start_matches("sha256:")
        )))
        .unwrap(),
    )
    .unwrap();
    let blob = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(layer.is_some());
    let path = tb
        .root()
        .join("images/blobs/sha256")
        .join(blob.trim_start_matches("sha256:"));
    let mut data = std::fs::read(&path).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&path, &data).unwrap();
    for fmt in ["docker-archive", "oci-archive"] {
        let out = tb.dir.path().join(format!("{fmt}.tar"));
        let o = tb.out(&[
            "save",
            "--format",
            fmt,
            "-o",
            out.to_str().unwrap(),
            "busybox",
        ]);
        assert_ne!(o.status.code(), Some(0), "{fmt}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("corrupt") || err.contains("hashes to"),
            "{fmt}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{fmt}: one line: {err}");
        assert!(!out.exists(), "{fmt}: no archive left");
    }
    tb.assert_clean(&[]);
}

#[test]
fn images_select_by_repository_and_filters() {
    let tb = Tb::new();
    tb.ok(&["tag", "busybox", "example.org/me/bb:v1"]);
    tb.ok(&["tag", "busybox", "example.org/me/bb:v2"]);
    // an untagged (dangling) image: imported without a name
    let fs = tb.dir.path().join("fs.tar");
    let st = Command::new("tar")
        .args(["-C", "/etc", "-cf"])
        .arg(&fs)
        .arg("hostname")
        .status()
        .unwrap();
    assert!(st.success());
    let dangling = tb.ok(&["import", fs.to_str().unwrap()]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = tb
            .ok(&[
                &["images", "--format", "{{.Repository}}:{{.Tag}}"][..],
                args,
            ]
            .concat())
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let all = vec![
        "<none>:<none>".to_string(),
        "busybox:latest".into(),
        "example.org/me/bb:v1".into(),
        "example.org/me/bb:v2".into(),
    ];
    assert_eq!(names(&[]), all);
    assert_eq!(names(&["-a"]), all, "no intermediate images to reveal");
    assert_eq!(names(&["example.org/me/bb"]), all[2..].to_vec());
    assert_eq!(names(&["example.org/me/bb:v2"]), all[3..].to_vec());
    assert_eq!(names(&["docker.io/library/busybox"]), all[1..2].to_vec());
    assert_eq!(names(&["-f", "dangling=true"]), all[..1].to_vec());
    assert_eq!(names(&["-f", "dangling=false"]), all[1..].to_vec());
    assert_eq!(names(&["-f", "reference=*/me/*:v1"]), all[2..3].to_vec());
    assert_eq!(names(&["-f", "reference=busy*"]), all[1..2].to_vec());
    let q = tb.ok(&["images", "-q", "--no-trunc", "-f", "dangling=true"]);
    assert_eq!(q.trim(), dangling.trim());
    tb.fails(&["images", "-f", "label=x"], 125, "unknown filter");
    tb.fails(&["images", "-f", "dangling=maybe"], 125, "true or false");
    tb.fails(&["images", "Bad Name"], 125, "invalid image reference");
    tb.ok(&["rmi", dangling.trim()]);
    tb.assert_clean(&[]);
}
