//! Networks for process containers: the default bridge with NAT, user networks with
//! name resolution, none and host, published ports, links, connect/disconnect, address
//! leases, and clean-up. Each test runs in a network namespace of its own (see
//! common::Tb), so nothing it builds or sends leaves it. The same scenarios for
//! microVMs (and between a microVM and a process container) are in vm_lab.rs.

mod common;
use common::*;
use serde_json::Value;

fn inspect(tb: &Tb, what: &[&str]) -> Value {
    let v: Value = serde_json::from_str(&tb.ok(what)).unwrap();
    v[0].clone()
}

fn ip_of(tb: &Tb, c: &str) -> String {
    inspect(tb, &["inspect", c])["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `wget -qO- URL` from the test's namespace (not from a container).
fn fetch(tb: &Tb, url: &str) -> Option<String> {
    let o = tb.host(&["timeout", "5", "busybox", "wget", "-qO-", url]);
    o.status.success().then(|| stdout(&o))
}

fn ip_forward(tb: &Tb) -> String {
    stdout(&tb.host(&["cat", "/proc/sys/net/ipv4/ip_forward"]))
        .trim()
        .to_string()
}

#[test]
fn default_bridge_gives_an_address_a_route_and_nat() {
    let tb = Tb::new();
    // A new namespace copies the host's setting: start this one from off.
    let o = tb.host(&["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"]);
    assert!(o.status.success());
    let before = ip_forward(&tb);
    assert_eq!(before, "0");
    let out = tb.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; ip route; cat /etc/hosts; hostname",
    ]);
    assert!(out.contains("inet 10.88.0.2/16"), "{out}");
    assert!(out.contains("default via 10.88.0.1 dev eth0"), "{out}");
    assert!(
        out.contains("10.88.0.2\t"),
        "the container's own name in /etc/hosts: {out}"
    );
    assert_eq!(ip_forward(&tb), "1", "forwarding on while a bridge exists");
    let rules = stdout(&tb.host(&["nft", "list", "table", "ip", "twinbox"]));
    assert!(
        rules.contains("ip saddr 10.88.0.0/16 oifname != \"twinbox0\" masquerade"),
        "{rules}"
    );
    // the address was freed with the container: the next one gets it again
    let out = tb.ok(&[
        "run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(out.contains("10.88.0.2/16"), "{out}");
    tb.ok(&["network", "rm", "bridge"]);
    tb.assert_net_clean();
    assert_eq!(
        ip_forward(&tb),
        before,
        "forwarding restored with the last bridge"
    );
    tb.assert_clean(&[]);
}

#[test]
fn user_network_names_aliases_and_later_containers_resolve() {
    let tb = Tb::new();
    tb.ok(&["network", "create", "appnet"]);
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "echo",
        "--network",
        "appnet",
        "--network-alias",
        "tcp-echo",
        "busybox",
        "nc",
        "-ll",
        "-p",
        "7",
        "-e",
        "cat",
    ]);
    let out = tb.ok(&[
        "run", "--rm", "--network", "appnet", "busybox", "sh", "-c",
        "cat /etc/resolv.conf; ping -c1 -W2 echo >/dev/null && echo ping-ok; echo hello | nc -w2 tcp-echo 7",
    ]);
    assert!(out.contains("nameserver 127.0.0.11"), "{out}");
    assert!(out.contains("ping-ok"), "ping by name: {out}");
    assert!(out.contains("hello"), "TCP echo by alias: {out}");
    // a container started later is found by one that was already running
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "early",
        "--network",
        "appnet",
        "busybox",
        "sleep",
        "60",
    ]);
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "late",
        "--network",
        "appnet",
        "busybox",
        "sleep",
        "60",
    ]);
    let late_ip = ip_of(&tb, "late");
    let out = tb.ok(&["exec", "early", "nslookup", "late"]);
    assert!(
        out.contains(&late_ip),
        "early resolves late ({late_ip}): {out}"
    );
    // the same over TCP (a hand-made query for "late", 2-byte length first): the
    // answer's last four bytes are late's address
    let out = tb.ok(&[
        "exec", "early", "sh", "-c",
        r#"printf '\000\026\022\064\001\000\000\001\000\000\000\000\000\000\004late\000\000\001\000\001' | nc -w 2 127.0.0.11 53 | od -An -tu1 | awk '{for (i = 1; i <= NF; i++) b[n++] = $i} END {print b[n-4] "." b[n-3] "." b[n-2] "." b[n-1]}'"#,
    ]);
    assert_eq!(out.trim(), late_ip, "DNS over TCP");
    // names of other networks do not resolve; a stopped container's name goes away
    tb.ok(&["run", "-d", "--name", "elsewhere", "busybox", "sleep", "60"]);
    let o = tb.out(&["exec", "early", "nslookup", "elsewhere"]);
    assert!(
        !o.status.success(),
        "a default-bridge container is not in appnet's DNS"
    );
    tb.ok(&["stop", "-t", "0", "late"]);
    let o = tb.out(&["exec", "early", "nslookup", "late"]);
    assert!(
        !o.status.success(),
        "a stopped container no longer resolves"
    );
    // networks are isolated from each other
    let other = ip_of(&tb, "elsewhere");
    let o = tb.out(&["exec", "early", "ping", "-c1", "-W1", &other]);
    assert!(
        !o.status.success(),
        "appnet cannot reach the default bridge"
    );
    tb.ok(&["rm", "-f", "echo", "early", "late", "elsewhere"]);
    tb.ok(&["network", "rm", "appnet", "bridge"]);
    tb.assert_net_clean();
    tb.assert_clean(&[]);
}

#[test]
fn published_ports_reach_the_container_until_it_stops() {
    let tb = Tb::new();
    // the namespace's own "host address", besides 127.0.0.1
    for c in [
        &[
            "ip", "link", "add", "hostnic0", "type", "veth", "peer", "name", "hostnic1",
        ][..],
        &["ip", "addr", "add", "192.168.77.1/24", "dev", "hostnic0"],
        &["ip", "link", "set", "hostnic0", "up"],
    ] {
        assert!(tb.host(c).status.success());
    }
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:8053:53/udp",
        "busybox",
        "sh",
        "-c",
        "echo served > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]);
    let ports = tb.ok(&["port", "web"]);
    assert!(ports.contains("80/tcp -> 0.0.0.0:8080"), "{ports}");
    assert!(ports.contains("53/udp -> 127.0.0.1:8053"), "{ports}");
    assert_eq!(tb.ok(&["port", "web", "80"]).trim(), "0.0.0.0:8080");
    assert!(tb.ok(&["ps"]).contains("0.0.0.0:8080->80/tcp"));
    let mut got = None;
    assert!(eventually(10, || {
        got = fetch(&tb, "http://127.0.0.1:8080/");
        got.is_some()
    }));
    assert_eq!(got.unwrap().trim(), "served");
    assert_eq!(
        fetch(&tb, "http://192.168.77.1:8080/")
            .as_deref()
            .map(str::trim),
        Some("served")
    );
    // a second container cannot take the same host port: one line, nothing left
    let before = tb.all_ids();
    tb.fails(
        &["run", "--rm", "-p", "8080:80", "busybox", "true"],
        125,
        "already in use",
    );
    assert_eq!(tb.all_ids(), before);
    // random host port (-p CTRPORT)
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "rnd",
        "-p",
        "80",
        "busybox",
        "sh",
        "-c",
        "echo rnd > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]);
    let hp = tb.ok(&["port", "rnd", "80/tcp"]);
    let port: u16 = hp.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(port > 0);
    assert!(eventually(10, || fetch(
        &tb,
        &format!("http://127.0.0.1:{port}/")
    )
    .is_some()));
    // stopped: the rule is gone, `port` lists nothing
    tb.ok(&["stop", "-t", "0", "web"]);
    assert_eq!(tb.ok(&["port", "web"]), "");
    assert!(fetch(&tb, "http://127.0.0.1:8080/").is_none());
    let rules = stdout(&tb.host(&["nft", "list", "table", "ip", "twinbox"]));
    assert!(!rules.contains("8080"), "{rules}");
    // started again: published again
    tb.ok(&["start", "web"]);
    assert!(eventually(10, || fetch(&tb, "http://127.0.0.1:8080/").is_some()));
    tb.ok(&["rm", "-f", "web", "rnd"]);
    tb.ok(&["network", "rm", "bridge"]);
    tb.assert_net_clean();
    tb.assert_clean(&[]);
}

#[test]
fn none_and_host_modes() {
    let tb = Tb::new();
    assert!(tb
        .host(&["ip", "link", "add", "hostnic0", "type", "veth", "peer", "name", "hostnic1"])
        .status
        .success());
    let none = tb.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    let names: Vec<&str> = none
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(str::trim)
        .collect();
    assert_eq!(names, vec!["lo"], "{none}");
    let host = tb.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "ip",
        "-o",
        "link",
    ]);
    assert!(
        host.contains("hostnic0"),
        "--network host sees the host's interfaces: {host}"
    );
    assert_eq!(
        tb.net_leftovers(),
        Vec::<String>::new(),
        "neither mode makes a bridge"
    );
    tb.assert_clean(&[]);
}

#[test]
fn links_connect_and_disconnect() {
    let tb = Tb::new();
    tb.ok(&["run", "-d", "--name", "db", "busybox", "sleep", "60"]);
    let db_ip = ip_of(&tb, "db");
    let hosts = tb.ok(&[
        "run",
        "--rm",
        "--link",
        "db:database",
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    assert!(hosts.contains(&format!("{db_ip}\tdatabase db")), "{hosts}");
    let out = tb.ok(&[
        "run",
        "--rm",
        "--link",
        "db:database",
        "busybox",
        "ping",
        "-c1",
        "-W2",
        "database",
    ]);
    assert!(out.contains("1 packets received"), "{out}");
    tb.fails(
        &["run", "--rm", "--link", "nosuch:x", "busybox", "true"],
        125,
        "nosuch",
    );
    // connect a running container to a user network: a live eth1, and DNS there
    tb.ok(&["network", "create", "--subnet", "10.123.0.0/24", "side"]);
    tb.ok(&["network", "connect", "--alias", "dbside", "side", "db"]);
    let a = tb.ok(&["exec", "db", "ip", "-4", "-o", "addr", "show", "eth1"]);
    assert!(a.contains("10.123.0.2/24"), "{a}");
    let out = tb.ok(&[
        "run",
        "--rm",
        "--network",
        "side",
        "busybox",
        "ping",
        "-c1",
        "-W2",
        "dbside",
    ]);
    assert!(out.contains("1 packets received"), "{out}");
    tb.fails(
        &["network", "connect", "side", "db"],
        125,
        "already connected",
    );
    tb.fails(&["network", "rm", "side"], 1, "db");
    tb.ok(&["network", "disconnect", "side", "db"]);
    let o = tb.out(&["exec", "db", "ip", "link", "show", "eth1"]);
    assert!(!o.status.success(), "eth1 gone after disconnect");
    let v = inspect(&tb, &["network", "inspect", "side"]);
    assert_eq!(v["Containers"].as_object().unwrap().len(), 0);
    assert_eq!(v["Leases"], 0, "the address went back");
    tb.ok(&["rm", "-f", "db"]);
    tb.ok(&["network", "rm", "side", "bridge"]);
    tb.assert_net_clean();
    tb.assert_clean(&[]);
}

#[test]
fn leases_are_unique_freed_on_rm_and_survive_a_dead_monitor() {
    let tb = Tb::new();
    tb.ok(&["network", "create", "--subnet", "10.124.0.0/28", "small"]);
    // parallel creates never share an address
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let mut c = tb.cmd(&[
                "create",
                "--name",
                &format!("c{i}"),
                "--network",
                "small",
                "busybox",
                "true",
            ]);
            std::thread::spawn(move || c.output().unwrap())
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap().status.success());
    }
    let mut ips: Vec<String> = (0..6).map(|i| ip_of(&tb, &format!("c{i}"))).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 6, "six distinct addresses: {ips:?}");
    assert_eq!(inspect(&tb, &["network", "inspect", "small"])["Leases"], 6);
    // a /28 has 13 addresses for containers: the 14th create fails cleanly
    for i in 6..13 {
        tb.ok(&[
            "create",
            "--name",
            &format!("c{i}"),
            "--network",
            "small",
            "busybox",
            "true",
        ]);
    }
    let before = tb.all_ids();
    tb.fails(
        &["create", "--network", "small", "busybox", "true"],
        125,
        "no free address",
    );
    assert_eq!(tb.all_ids().len(), before.len());
    for i in 1..13 {
        tb.ok(&["rm", &format!("c{i}")]);
    }
    assert_eq!(inspect(&tb, &["network", "inspect", "small"])["Leases"], 1);
    // a killed monitor: the container shows exited, its veth goes, its lease stays
    tb.ok(&["start", "c0"]);
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "victim",
        "--network",
        "small",
        "busybox",
        "sleep",
        "60",
    ]);
    let ip = ip_of(&tb, "victim");
    let monitor = inspect(&tb, &["inspect", "victim"])["State"]["MonitorPid"]
        .as_i64()
        .unwrap() as i32;
    // SAFETY: kill(2) on the monitor the test just started.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    assert!(eventually(10, || tb
        .ok(&["ps", "-a"])
        .contains("Exited (137)")));
    assert!(eventually(10, || !tb
        .net_leftovers()
        .iter()
        .any(|d| d.starts_with("tbv"))));
    assert_eq!(ip_of(&tb, "victim"), ip, "the lease is kept until rm");
    let o = tb.out(&[
        "create",
        "--network",
        "small",
        "--ip",
        &ip,
        "busybox",
        "true",
    ]);
    assert!(!o.status.success(), "nobody else gets it meanwhile");
    tb.ok(&["rm", "victim", "c0"]);
    assert_eq!(inspect(&tb, &["network", "inspect", "small"])["Leases"], 0);
    tb.ok(&["network", "rm", "small"]);
    tb.assert_net_clean();
    tb.assert_clean(&[]);
}

#[test]
fn bad_network_input_is_one_line_and_leaves_nothing() {
    let tb = Tb::new();
    tb.ok(&["network", "create", "--subnet", "10.125.0.0/16", "one"]);
    tb.fails(
        &["network", "create", "--subnet", "10.125.5.0/24", "two"],
        125,
        "overlaps with network one",
    );
    tb.fails(&["network", "create", "one"], 125, "already exists");
    tb.fails(
        &["network", "create", "--subnet", "10.126.0.1/16", "three"],
        125,
        "host bits",
    );
    tb.fails(
        &["network", "create", "--driver", "macvlan", "four"],
        125,
        "driver",
    );
    tb.fails(&["network", "rm", "nosuchnet"], 1, "nosuchnet not found");
    tb.fails(&["network", "rm", "host"], 1, "pre-defined");
    tb.fails(
        &["run", "--rm", "--network", "nosuchnet", "busybox", "true"],
        125,
        "nosuchnet not found",
    );
    tb.fails(
        &["run", "--rm", "-p", "99999:80", "busybox", "true"],
        125,
        "invalid host port",
    );
    tb.fails(
        &["run", "--rm", "-p", "8080:80/sctp", "busybox", "true"],
        125,
        "protocol",
    );
    tb.fails(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-p",
            "8080:80",
            "busybox",
            "true",
        ],
        125,
        "bridge network",
    );
    tb.fails(
        &["run", "--rm", "--network-alias", "x", "busybox", "true"],
        125,
        "user-defined",
    );
    tb.fails(
        &["network", "connect", "one", "nosuchcontainer"],
        125,
        "nosuchcontainer",
    );
    let ls = tb.ok(&["network", "ls"]);
    for n in ["bridge", "host", "none", "one"] {
        assert!(ls.contains(n), "{ls}");
    }
    assert!(!ls.contains("two") && !ls.contains("three"));
    tb.ok(&["network", "rm", "one"]);
    let gone = tb.ok(&["network", "prune"]);
    assert_eq!(gone, "");
    tb.ok(&["network", "rm", "bridge"]);
    tb.assert_net_clean();
    tb.assert_clean(&[]);
}

#[test]
fn the_default_subnet_avoids_addresses_in_use() {
    let tb = Tb::new();
    for c in [
        &[
            "ip", "link", "add", "hostnic0", "type", "veth", "peer", "name", "hostnic1",
        ][..],
        &["ip", "addr", "add", "10.88.40.1/24", "dev", "hostnic0"],
        &["ip", "link", "set", "hostnic0", "up"],
    ] {
        assert!(tb.host(c).status.success());
    }
    let out = tb.ok(&[
        "run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert!(
        out.contains("inet 10.89.0.2/16"),
        "10.88/16 is taken on the host: {out}"
    );
    tb.fails(
        &["network", "create", "--subnet", "10.88.40.0/26", "clash"],
        125,
        "in use on this host",
    );
    tb.ok(&["network", "rm", "bridge"]);
    tb.assert_net_clean();
    tb.assert_clean(&[]);
}

#[test]
fn publish_all_uses_the_images_exposed_ports() {
    let tb = Tb::new();
    // an image that EXPOSEs 80: busybox's filesystem imported with the instruction
    tb.ok(&[
        "create",
        "--name",
        "src",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    let fs = tb.dir.path().join("fs.tar");
    tb.ok(&["export", "-o", fs.to_str().unwrap(), "src"]);
    tb.ok(&[
        "import",
        "-c",
        "EXPOSE 80",
        fs.to_str().unwrap(),
        "web:exposed",
    ]);
    tb.ok(&["rm", "src"]);
    tb.ok(&[
        "run",
        "-d",
        "--name",
        "wx",
        "-P",
        "web:exposed",
        "sh",
        "-c",
        "echo exposed > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]);
    let hp = tb.ok(&["port", "wx", "80"]);
    let port: u16 = hp.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert!(port > 0, "{hp}");
    let mut got = None;
    assert!(eventually(10, || {
        got = fetch(&tb, &format!("http://127.0.0.1:{port}/"));
        got.is_some()
    }));
    assert_eq!(got.unwrap().trim(), "exposed");
    tb.ok(&["rm", "-f", "wx"]);
    tb.ok(&["network", "rm", "bridge"]);
    tb.assert_net_clean();
    tb.assert_clean(&[]);
}
