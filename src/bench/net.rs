//! The net suites: TCP throughput and round-trip time between two sandboxes on one
//! twinbox network, next to the floor — a plain veth pair between two bare network
//! namespaces — measured in the same run with the same tools (busybox nc and ping).
//!
//! Throughput: the server sends NET_BYTES of zeros per connection, the client times
//! how long receiving them takes. RTT: the average of a burst of pings.

use super::{series, skipped, twinbox, Series};
use crate::engine::Engine;
use std::process::{Child, Command, Stdio};

/// Bytes per throughput sample: natively, and in the lab (where a microVM's packets
/// cross two levels of emulated virtualization and move at a few MB/s).
pub const NET_BYTES: u64 = 64 << 20;
pub const NET_BYTES_LAB: u64 = 4 << 20;
const PORT: u16 = 5001;

/// The client's script: `runs` timed transfers, then `runs` ping bursts.
fn client_script(server: &str, runs: usize) -> String {
    format!(
        "i=0; while [ $i -lt {runs} ]; do busybox time -p busybox sh -c 'busybox nc {server} {PORT} </dev/null | busybox wc -c'; i=$((i+1)); done; \
         i=0; while [ $i -lt {runs} ]; do busybox ping -c 5 -i 0.05 -q {server} | busybox tail -1; i=$((i+1)); done"
    )
}

fn server_args(bytes: u64) -> Vec<String> {
    [
        "busybox",
        "nc",
        "-ll",
        "-p",
        &PORT.to_string(),
        "-e",
        "busybox",
        "head",
        "-c",
        &bytes.to_string(),
        "/dev/zero",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// (MB/s samples, RTT ms samples) from the client's output.
pub fn parse_client(
    stdout: &str,
    stderr: &str,
    bytes: u64,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    let mib = bytes as f64 / (1 << 20) as f64;
    let counts: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Some(c) = counts.iter().find(|c| **c != bytes) {
        return Err(format!("a transfer received {c} of {bytes} bytes"));
    }
    let thr: Vec<f64> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("real "))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .map(|s| mib / s.max(0.005))
        .collect();
    let rtt: Vec<f64> = stdout
        .lines()
        .filter_map(|l| l.split(" = ").nth(1))
        .filter_map(|v| v.split('/').nth(1))
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    if thr.is_empty() || rtt.is_empty() || thr.len() != counts.len() {
        return Err(format!(
            "no measurements in the client's output: {} {}",
            stdout.trim(),
            stderr.trim()
        ));
    }
    Ok((thr, rtt))
}

fn both(name: &str, location: &str, r: Result<(Vec<f64>, Vec<f64>), String>) -> (Series, Series) {
    match r {
        Ok((t, l)) => (series(name, location, t), series(name, location, l)),
        Err(e) => (skipped(name, &e), skipped(name, &e)),
    }
}

/// A process holding a fresh network namespace (`unshare -n sleep`), and helpers that
/// run in it; killed on drop.
struct Ns(Child);

impl Ns {
    fn new() -> Result<Ns, String> {
        let c = Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("unshare: {e}"))?;
        let ns = Ns(c);
        // Wait until the child has its own namespace.
        let mine = std::fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
        for _ in 0..200 {
            if std::fs::read_link(ns.path()).is_ok_and(|l| l != mine) {
                return Ok(ns);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Err("unshare -n did not make a network namespace".into())
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }

    fn cmd(&self, args: &[String]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path())).args(args);
        c
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Put a veth pair between two namespaces, with addresses, up.
fn wire(a: &Ns, b: &Ns) -> std::io::Result<()> {
    use crate::network::netlink::{self, Netlink};
    use std::os::fd::AsRawFd;
    let fa = std::fs::File::open(a.path())?;
    let fb = std::fs::File::open(b.path())?;
    let mut nl = Netlink::open()?;
    let tmp = format!("tbbench{}", std::process::id() % 100_000);
    nl.add_veth(&tmp, 0, "eth0", fb.as_raw_fd(), [2, 0, 0, 0, 0, 2])?;
    let i =
        netlink::index_of(&tmp).ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENODEV))?;
    nl.set_netns(i, fa.as_raw_fd())?;
    for (ns, dev, ip) in [
        (a, tmp.as_str(), [10, 254, 0, 1]),
        (b, "eth0", [10, 254, 0, 2]),
    ] {
        netlink::in_netns(std::path::Path::new(&ns.path()), || {
            let mut n = Netlink::open()?;
            let i = netlink::index_of(dev)
                .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENODEV))?;
            n.add_address(i, ip.into(), 30)?;
            n.set_up(i, true)?;
            if let Some(lo) = netlink::index_of("lo") {
                n.set_up(lo, true)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Two bare namespaces joined by a veth pair: the floor.
fn floor(runs: usize, bytes: u64) -> Result<(Vec<f64>, Vec<f64>), String> {
    let a = Ns::new()?;
    let b = Ns::new()?;
    wire(&a, &b).map_err(|e| format!("veth between two namespaces: {e}"))?;
    let mut server = a
        .cmd(&server_args(bytes))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("nsenter: {e}"))?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = b
        .cmd(&[
            "busybox".into(),
            "sh".into(),
            "-c".into(),
            client_script("10.254.0.1", runs),
        ])
        .output()
        .map_err(|e| e.to_string());
    let _ = server.kill();
    let _ = server.wait();
    let o = o?;
    parse_client(
        &String::from_utf8_lossy(&o.stdout),
        &String::from_utf8_lossy(&o.stderr),
        bytes,
    )
}

/// Two sandboxes of one isolation model on a twinbox network made for the run.
fn pair(
    engine: &Engine,
    isolation: &str,
    runs: usize,
    bytes: u64,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    let pid = std::process::id();
    let net = format!("tbbench-{pid}");
    let srv = format!("tbbench-srv-{pid}");
    let run = |args: &[&str]| -> Result<String, String> {
        let o = twinbox(&engine.paths)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    };
    run(&["network", "create", &net])?;
    let result = (|| {
        let mut a = vec![
            "run",
            "-d",
            "--name",
            &srv,
            "--network",
            &net,
            "--isolation",
            isolation,
        ];
        let sargs = server_args(bytes);
        a.extend(sargs.iter().map(String::as_str));
        run(&a)?;
        let v: serde_json::Value =
            serde_json::from_str(&run(&["inspect", &srv])?).map_err(|e| e.to_string())?;
        let ip = v[0]["NetworkSettings"]["IPAddress"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let o = twinbox(&engine.paths)
            .args(["run", "--rm", "--network", &net, "--isolation", isolation])
            .args(["busybox", "sh", "-c", &client_script(&ip, runs)])
            .output()
            .map_err(|e| e.to_string())?;
        parse_client(
            &String::from_utf8_lossy(&o.stdout),
            &String::from_utf8_lossy(&o.stderr),
            bytes,
        )
    })();
    let _ = run(&["rm", "-f", &srv]);
    let _ = run(&["network", "rm", &net]);
    result
}

/// (throughput series, RTT series) for the floor and each isolation model given.
pub fn suites(
    engine: &Engine,
    runs: usize,
    isolations: &[&str],
    location: &str,
) -> (Vec<Series>, Vec<Series>) {
    let (mut thr, mut rtt) = (Vec::new(), Vec::new());
    let bytes = if location == "lab" {
        NET_BYTES_LAB
    } else {
        NET_BYTES
    };
    let (t, l) = both(
        &format!("veth pair, bare namespaces (floor, {location})"),
        location,
        floor(runs, bytes),
    );
    thr.push(t);
    rtt.push(l);
    for iso in isolations {
        let what = if *iso == "vm" {
            "virtio-net + TAP + bridge"
        } else {
            "veth + bridge"
        };
        let (t, l) = both(
            &format!("twinbox {iso} ↔ {iso} ({what})"),
            location,
            pair(engine, iso, runs, bytes),
        );
        thr.push(t);
        rtt.push(l);
    }
    (thr, rtt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_output_parses() {
        let out = format!("{NET_BYTES}\n{NET_BYTES}\nround-trip min/avg/max = 0.066/0.088/0.185 ms\nround-trip min/avg/max = 0.05/0.070/0.1 ms\n");
        let err = "real 0.50\nuser 0.01\nsys 0.2\nreal 0.25\n";
        let (t, l) = parse_client(&out, err, NET_BYTES).unwrap();
        assert_eq!(t, vec![128.0, 256.0]);
        assert_eq!(l, vec![0.088, 0.070]);
        assert!(
            parse_client("12\n", err, NET_BYTES).is_err(),
            "a short transfer is an error"
        );
        assert!(parse_client("", "", NET_BYTES).is_err());
    }
}
