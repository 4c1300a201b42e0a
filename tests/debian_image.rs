//! A real distribution image: debootstrap (Debian's) builds a minimal bookworm root
//! once (cached under /var/cache/twinbox/debootstrap), `twinbox import` makes it an
//! image, and Debian's own tools run in it.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

const MIRROR: &str = "http://deb.debian.org/debian";

/// The cached tarball of a minbase bookworm root, built on first use.
fn debian_tarball() -> PathBuf {
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

#[test]
fn a_debootstrapped_debian_runs_its_own_tools() {
    let tb = Tb::new();
    let tar = debian_tarball();
    tb.ok(&[
        "import",
        "-c",
        "CMD [\"bash\"]",
        tar.to_str().unwrap(),
        "debian:bookworm",
    ]);
    let out = tb.ok(&[
        "run", "--rm", "--network", "none", "debian:bookworm", "sh", "-c",
        "apt-get --version | head -1; cat /etc/debian_version; useradd -m bob && id -u bob && ls -d /home/bob",
    ]);
    let l: Vec<&str> = out.lines().collect();
    assert!(l[0].starts_with("apt "), "{out}");
    assert!(l[1].starts_with("12."), "{out}");
    assert_eq!(l[2], "1000", "{out}");
    assert_eq!(l[3], "/home/bob", "{out}");
    let h = tb.ok(&["history", "debian:bookworm"]);
    assert!(h.contains("twinbox import"), "{h}");
    tb.ok(&["rmi", "debian:bookworm"]);
    tb.assert_clean(&[]);
}
