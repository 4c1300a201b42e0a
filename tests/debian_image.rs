//! A real distribution image: debootstrap (Debian's) builds a minimal bookworm root
//! once (cached under /var/cache/twinbox/debootstrap), `twinbox import` makes it an
//! image, and Debian's own tools run in it.

mod common;
use common::foreign::*;
use common::*;

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
