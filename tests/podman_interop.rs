//! Interoperability with Debian's podman: podman loads and runs what `twinbox save`
//! writes (docker-archive and OCI layout), and twinbox loads and runs what `podman
//! save` writes, with the same image id and the same history.

mod common;
use common::foreign::*;
use common::*;

/// CREATED BY of each history entry, as podman prints it.
fn podman_history(tb: &Tb, image: &str) -> Vec<String> {
    pok(
        tb,
        &["history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
    )
    .lines()
    .map(|l| l.trim().to_string())
    .collect()
}

#[test]
fn podman_and_twinbox_exchange_images_both_ways() {
    let tb = Tb::new();
    let v: serde_json::Value =
        serde_json::from_str(&tb.ok(&["image", "inspect", "busybox"])).unwrap();
    let id = v[0]["Id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let dir = tb.dir.path();
    // twinbox -> podman, both formats; podman runs them (with explicit limits: these
    // machines refuse podman's default rlimits)
    for (fmt, file) in [("docker-archive", "t-d.tar"), ("oci-archive", "t-o.tar")] {
        let f = dir.join(file);
        tb.ok(&[
            "save",
            "--format",
            fmt,
            "-o",
            f.to_str().unwrap(),
            "busybox",
        ]);
        let out = pok(&tb, &["load", "-i", f.to_str().unwrap()]);
        assert!(out.contains("busybox"), "{fmt}: {out}");
    }
    let ids = pok(&tb, &["images", "--no-trunc", "--format", "{{.ID}}"]);
    assert!(
        ids.lines().all(|l| l.trim_start_matches("sha256:") == id),
        "same image id: {ids}"
    );
    let ran = pok(
        &tb,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
            "docker.io/library/busybox:latest",
            "echo",
            "podman-ran",
        ],
    );
    assert_eq!(ran.trim(), "podman-ran");
    let ours: Vec<String> = tb
        .ok(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}",
            "busybox",
        ])
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(
        ours,
        podman_history(&tb, "docker.io/library/busybox:latest"),
        "same history"
    );
    // podman -> twinbox, both formats
    tb.ok(&["rmi", "busybox"]);
    for (fmt, file, name) in [
        ("docker-archive", "p-d.tar", "example.org/from-podman:d"),
        ("oci-archive", "p-o.tar", "example.org/from-podman:o"),
    ] {
        pok(&tb, &["tag", "docker.io/library/busybox:latest", name]);
        let f = dir.join(file);
        pok(
            &tb,
            &["save", "--format", fmt, "-o", f.to_str().unwrap(), name],
        );
        let out = tb.ok(&["load", "-i", f.to_str().unwrap()]);
        assert!(out.contains("Loaded image"), "{fmt}: {out}");
        let v: serde_json::Value =
            serde_json::from_str(&tb.ok(&["image", "inspect", name])).unwrap();
        assert_eq!(
            v[0]["Id"].as_str().unwrap().trim_start_matches("sha256:"),
            id,
            "{fmt}"
        );
        assert_eq!(
            tb.ok(&["run", "--rm", "--network", "none", name, "echo", fmt]),
            format!("{fmt}\n")
        );
    }
    tb.assert_clean(&[]);
}
