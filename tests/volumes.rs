//! Volumes, bind mounts and tmpfs under process isolation (the microVM side is in
//! vm_lab.rs): data that outlives containers, read-only mounts, Docker's copy-up of
//! the image's files into a new volume, anonymous volumes and their removal, and
//! mount targets resolved inside the container even through the image's symlinks.

mod common;
use common::*;
use std::process::Command;

/// The volume name of a container's first mount.
fn first_volume(tb: &Tb, container: &str) -> String {
    let c: serde_json::Value = serde_json::from_str(&tb.ok(&["inspect", container])).unwrap();
    c[0]["Mounts"][0]["Name"].as_str().unwrap().to_string()
}

fn vol_dir(tb: &Tb, name: &str) -> std::path::PathBuf {
    tb.root().join("volumes").join(name).join("_data")
}

#[test]
fn named_volumes_outlive_containers_and_are_guarded() {
    let tb = Tb::new();
    assert_eq!(tb.ok(&["volume", "create", "data"]).trim(), "data");
    tb.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo persisted > /data/f",
    ]);
    assert_eq!(
        tb.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "data:/d:ro",
            "busybox",
            "cat",
            "/d/f"
        ]),
        "persisted\n"
    );
    // read-only means read-only
    let o = tb.out(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--mount",
        "type=volume,source=data,target=/d,readonly",
        "busybox",
        "sh",
        "-c",
        "echo x > /d/g",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Read-only"),
        "{o:?}"
    );
    assert!(!vol_dir(&tb, "data").join("g").exists());
    // a volume named by -v is made on first use
    tb.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "made:/m",
        "busybox",
        "true",
    ]);
    let ls = tb.ok(&["volume", "ls", "-q"]);
    assert_eq!(ls.lines().collect::<Vec<_>>(), ["data", "made"]);
    let v: serde_json::Value =
        serde_json::from_str(&tb.ok(&["volume", "inspect", "data"])).unwrap();
    assert_eq!(v[0]["Name"], "data");
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(
        v[0]["Mountpoint"].as_str().unwrap(),
        vol_dir(&tb, "data").to_str().unwrap()
    );
    // in use (even by a stopped container): refused; inspect shows the mount
    tb.ok(&[
        "create",
        "--name",
        "user",
        "--network",
        "none",
        "-v",
        "data:/d",
        "busybox",
        "true",
    ]);
    tb.fails(&["volume", "rm", "data"], 1, "volume is in use - [user]");
    let c: serde_json::Value = serde_json::from_str(&tb.ok(&["inspect", "user"])).unwrap();
    let m = &c[0]["Mounts"][0];
    assert_eq!(
        (m["Type"].as_str(), m["Name"].as_str()),
        (Some("volume"), Some("data"))
    );
    assert_eq!(
        (m["Destination"].as_str(), m["RW"].as_bool()),
        (Some("/d"), Some(true))
    );
    assert_eq!(
        tb.ok(&["volume", "ls", "-q", "-f", "dangling=true"]).trim(),
        "made"
    );
    let df = tb.ok(&["system", "df"]);
    let row = df
        .lines()
        .find(|l| l.starts_with("Local Volumes"))
        .unwrap_or_else(|| panic!("{df}"));
    let f: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((f[2], f[3]), ("2", "1"), "2 volumes, 1 in use: {df}");
    tb.ok(&["rm", "user"]);
    // prune: anonymous ones only, unless -a
    tb.ok(&["volume", "prune", "-f"]);
    assert_eq!(tb.ok(&["volume", "ls", "-q"]).lines().count(), 2);
    let out = tb.ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains("data") && out.contains("made"), "{out}");
    assert_eq!(tb.ok(&["volume", "ls", "-q"]), "");
    assert!(!tb.root().join("volumes/data").exists());
    tb.fails(&["volume", "rm", "data"], 1, "no such volume: data");
    tb.fails(
        &["volume", "create", "-d", "nfs", "x1"],
        125,
        "not supported",
    );
    tb.assert_clean(&[]);
}

#[test]
fn anonymous_volumes_go_with_rm_v_and_run_rm() {
    let tb = Tb::new();
    tb.ok(&[
        "run",
        "--name",
        "keep",
        "--network",
        "none",
        "-v",
        "/cache",
        "busybox",
        "sh",
        "-c",
        "echo c > /cache/x",
    ]);
    let name = first_volume(&tb, "keep");
    assert_eq!(
        name.len(),
        64,
        "an anonymous volume has a random 64-hex name"
    );
    assert_eq!(
        std::fs::read_to_string(vol_dir(&tb, &name).join("x")).unwrap(),
        "c\n"
    );
    tb.ok(&["rm", "-v", "keep"]);
    assert!(
        !tb.root().join("volumes").join(&name).exists(),
        "rm -v removes it"
    );
    // without -v the anonymous volume stays, dangling, until prune
    tb.ok(&[
        "run",
        "--name",
        "k2",
        "--network",
        "none",
        "-v",
        "/cache",
        "busybox",
        "true",
    ]);
    tb.ok(&["rm", "k2"]);
    assert_eq!(
        tb.ok(&["volume", "ls", "-q", "-f", "dangling=true"])
            .lines()
            .count(),
        1
    );
    tb.ok(&["volume", "prune", "-f"]);
    // an anonymous volume another container names too is not taken by rm -v
    tb.ok(&[
        "run",
        "--name",
        "a1",
        "--network",
        "none",
        "-v",
        "/shared",
        "busybox",
        "true",
    ]);
    let shared = first_volume(&tb, "a1");
    tb.ok(&[
        "create",
        "--name",
        "b1",
        "--network",
        "none",
        "-v",
        &format!("{shared}:/x"),
        "busybox",
        "true",
    ]);
    tb.ok(&["rm", "-v", "a1"]);
    assert!(vol_dir(&tb, &shared).exists(), "b1 still names it");
    tb.ok(&["rm", "b1"]);
    tb.ok(&["volume", "rm", &shared]);
    // run --rm takes its anonymous volumes with it; named ones stay
    tb.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "/a1",
        "-v",
        "named:/n",
        "busybox",
        "true",
    ]);
    assert_eq!(tb.ok(&["volume", "ls", "-q"]).trim(), "named");
    tb.ok(&["volume", "rm", "named"]);
    tb.assert_clean(&[]);
}

#[test]
fn binds_tmpfs_and_copy_up() {
    let tb = Tb::new();
    let host = tb.dir.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("h.txt"), "from host\n").unwrap();
    let hf = tb.dir.path().join("single.conf");
    std::fs::write(&hf, "one file\n").unwrap();
    let hs = host.to_str().unwrap();
    let out = tb.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{hs}:/h"),
        "-v",
        &format!("{}:/etc/single.conf:ro", hf.display()),
        "busybox",
        "sh",
        "-c",
        "cat /h/h.txt /etc/single.conf; echo back > /h/c.txt",
    ]);
    assert_eq!(out, "from host\none file\n");
    assert_eq!(
        std::fs::read_to_string(host.join("c.txt")).unwrap(),
        "back\n"
    );
    let o = tb.out(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--mount",
        &format!("type=bind,src={hs},dst=/h,readonly"),
        "busybox",
        "touch",
        "/h/no",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!host.join("no").exists());
    // tmpfs: size, mode and noexec as asked
    let out = tb.ok(&[
        "run", "--rm", "--network", "none", "--tmpfs", "/t:size=1m,mode=700", "busybox", "sh", "-c",
        "grep ' /t ' /proc/mounts; stat -c %a /t; dd if=/dev/zero of=/t/x bs=1k count=2048 2>/dev/null; du -k /t/x | cut -f1",
    ]);
    let l: Vec<&str> = out.lines().collect();
    assert!(
        l[0].contains("tmpfs") && l[0].contains("noexec") && l[0].contains("size=1024k"),
        "{out}"
    );
    assert_eq!(l[1], "700");
    assert!(
        l[2].parse::<u64>().unwrap() <= 1024,
        "the tmpfs is bounded: {out}"
    );
    // copy-up: a new volume over /etc gets the image's files, and still the
    // container's own hostname on top; nocopy leaves it empty
    let out = tb.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-h",
        "volhost",
        "-v",
        "etcvol:/etc",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hostname; grep -c root /etc/passwd",
    ]);
    assert_eq!(out, "volhost\n1\n");
    assert!(vol_dir(&tb, "etcvol").join("passwd").exists());
    tb.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "empty:/etc:nocopy",
        "busybox",
        "true",
    ]);
    assert!(!vol_dir(&tb, "empty").join("passwd").exists());
    tb.ok(&["volume", "rm", "etcvol", "empty"]);
    tb.assert_clean(&[]);
}

#[test]
fn targets_through_image_symlinks_stay_inside_the_container() {
    // An image whose /link points at /etc: a volume at /link lands on the image's
    // /etc, and its copy-up reads the image's files, never the host's.
    let tb = Tb::new();
    let root = tb.dir.path().join("img");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/only-in-image"), "img\n").unwrap();
    std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
    std::os::unix::fs::symlink("../../../../etc", root.join("deep")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/ls")).unwrap();
    let tar = tb.dir.path().join("img.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    tb.ok(&["import", tar.to_str().unwrap(), "linky:1"]);
    for (target, vol) in [("/link", "v1"), ("/deep/x", "v2")] {
        tb.ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{vol}:{target}"),
            "linky:1",
            "/bin/ls",
            "/etc",
        ]);
    }
    let names: Vec<String> = std::fs::read_dir(vol_dir(&tb, "v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // The image's /etc (plus the container's hostname, hosts and resolv.conf, mounted
    // over it), nothing of the host's.
    assert!(names.contains(&"only-in-image".to_string()), "{names:?}");
    for host_only in ["passwd", "debian_version", "os-release", "fstab"] {
        assert!(
            !names.contains(&host_only.to_string()),
            "host file {host_only} leaked: {names:?}"
        );
    }
    assert!(
        !std::path::Path::new("/etc/x").exists(),
        "nothing made on the host"
    );
    tb.ok(&["volume", "rm", "v1", "v2"]);
    tb.ok(&["rmi", "linky:1"]);
    tb.assert_clean(&[]);
}

#[test]
fn bad_mounts_are_one_line_and_leave_nothing() {
    let tb = Tb::new();
    for (args, needle) in [
        (&["-v", "data"][..], "absolute path"),
        (&["-v", "data:/x:zz"], "invalid volume option"),
        (&["-v", "Bad Name:/x"], "invalid characters"),
        (
            &["-v", "/no/such/dir:/x"],
            "bind source path does not exist",
        ),
        (
            &["-v", "a1:/x", "--tmpfs", "/x"],
            "duplicate mount point: /x",
        ),
        (&["--mount", "type=nfs,target=/x"], "invalid --mount type"),
        (&["--mount", "type=bind,target=/x"], "a bind needs source="),
        (&["--tmpfs", "/t:uid=0"], "invalid tmpfs option"),
        (&["-v", "ok1:/"], "the root cannot be a mount"),
        (&["-v", "ok1:/."], "the root cannot be a mount"),
        (&["-v", "v1:/d", "-v", "v2:/d/s"], "inside the volume at /d"),
    ] {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "true"]);
        tb.fails(&a, 125, needle);
    }
    // a failing create after volumes were made removes the ones it made
    for (bad, needle) in [
        (&["--cpuset-cpus", "4000", "busybox"][..], "not available"),
        (&["nosuchimage:1"], "no such image"),
    ] {
        let mut a = vec!["run", "--rm", "--network", "none", "-v", "fresh:/f"];
        a.extend_from_slice(bad);
        a.push("true");
        tb.fails(&a, 125, needle);
    }
    assert_eq!(tb.ok(&["volume", "ls", "-q"]), "", "no volume left behind");
    assert!(tb.all_ids().is_empty());
    tb.assert_clean(&[]);
}
