//! The built-in busybox image: created on first use, inspectable, deterministic.

mod common;
use common::*;

#[test]
fn builtin_busybox_is_an_oci_image() {
    let tb = Tb::new();
    let v: serde_json::Value =
        serde_json::from_str(&tb.ok(&["image", "inspect", "busybox"])).unwrap();
    let img = &v[0];
    assert_eq!(img["RepoTags"][0], "busybox:latest");
    assert_eq!(img["Config"]["Cmd"][0], "sh");
    assert_eq!(img["Os"], "linux");
    assert_eq!(img["Architecture"], "amd64");
    let id = img["Id"].as_str().unwrap();
    assert!(id.starts_with("sha256:") && id.len() == 71);
    assert_eq!(img["RootFS"]["Layers"].as_array().unwrap().len(), 1);

    let images = tb.ok(&["images"]);
    assert!(images.starts_with("REPOSITORY"));
    assert!(images.contains("busybox") && images.contains(&id[7..19]));
    assert_eq!(tb.ok(&["images", "-q"]), format!("{}\n", &id[7..19]));

    // The blobs are content-addressed: every blob's name is its sha256.
    let blobs = tb.root().join("images/blobs/sha256");
    for e in std::fs::read_dir(&blobs).unwrap().flatten() {
        let data = std::fs::read(e.path()).unwrap();
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&data)),
            e.file_name().to_string_lossy()
        );
    }

    // Deterministic: a fresh store builds the same image id.
    let tb2 = Tb::new();
    let v2: serde_json::Value =
        serde_json::from_str(&tb2.ok(&["image", "inspect", "busybox"])).unwrap();
    assert_eq!(v2[0]["Id"], img["Id"]);
    tb.fails(&["image", "inspect", "nosuch"], 1, "no such image");
}

#[test]
fn layers_are_unpacked_once_and_shared() {
    let tb = Tb::new();
    let a = tb.ok(&["create", "busybox", "true"]).trim().to_string();
    let b = tb.ok(&["create", "busybox", "true"]).trim().to_string();
    let ia: serde_json::Value = serde_json::from_str(&tb.ok(&["inspect", &a])).unwrap();
    let ib: serde_json::Value = serde_json::from_str(&tb.ok(&["inspect", &b])).unwrap();
    let la = ia[0]["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        la,
        ib[0]["GraphDriver"]["Data"]["LowerDir"].as_str().unwrap()
    );
    assert_eq!(
        std::fs::read_dir(tb.root().join("images/layers"))
            .unwrap()
            .count(),
        1
    );
    assert!(std::path::Path::new(&la).join("bin/busybox").exists());
    tb.ok(&["rm", &a, &b]);
    tb.assert_clean(&[a, b]);
}
