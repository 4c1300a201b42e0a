//! Software from outside twinbox that tests use as a reference: a debootstrapped Debian
//! root and Debian's podman.

use super::{stdout, Tb};
use std::path::PathBuf;
use std::process::Command;

const MIRROR: &str = "http://deb.debian.org/debian";

/// The cached tarball of a minbase bookworm root, built on first use.
pub fn debian_tarball() -> PathBuf {
    let dir = PathBuf::from("/var/cache/twinbox/debootstrap");
    std::fs::create_dir_all(&dir).unwrap();
    let _l = twinbox::util::fs::Lock::exclusive(&dir.join(".lock")).unwrap();
    let tar = dir.join("bookworm-minbase.tar");
    if tar.exists() {
        return tar;
    }
    assert!(
        Command::new("debootstrap")
            .arg("--version")
            .output()
            .is_ok(),
        "debootstrap is needed (apt-get install debootstrap; scripts/setup.sh does)"
    );
    let root = dir.join("bookworm-minbase.tmp");
    let _ = std::fs::remove_dir_all(&root);
    let o = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&root)
        .arg(MIRROR)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "debootstrap failed (it needs {MIRROR}): {}",
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap_or("")
    );
    let part = dir.join("bookworm-minbase.tar.part");
    let st = Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&part)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::rename(&part, &tar).unwrap();
    let _ = std::fs::remove_dir_all(&root);
    tar
}

/// podman with its own storage in the test's directory, in the test's network
/// namespace (where the test's registries listen).
pub fn podman(tb: &Tb, args: &[&str]) -> std::process::Output {
    let d = tb.dir.path().join("podman");
    let o = Command::new("nsenter")
        .arg(format!("--net={}", tb.netns_path()))
        .arg("podman")
        .arg("--root")
        .arg(d.join("store"))
        .arg("--runroot")
        .arg(d.join("run"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ])
        .args(args)
        .env("XDG_DATA_HOME", d.join("data"))
        .env("XDG_CONFIG_HOME", d.join("config"))
        .output()
        .expect("podman is needed (apt-get install podman; scripts/setup.sh does)");
    o
}

pub fn pok(tb: &Tb, args: &[&str]) -> String {
    let o = podman(tb, args);
    assert!(
        o.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}
