//! What the host's network already uses, and the two sysctls twinbox touches
//! (ip_forward: saved and restored; route_localnet: on twinbox's own bridges only).

use super::ipam::Subnet;
use std::net::Ipv4Addr;
use std::path::Path;

/// Is this device one of twinbox's?
pub fn is_ours(dev: &str) -> bool {
    dev == super::DEFAULT_BRIDGE
        || dev.starts_with("tb-")
        || dev.starts_with("tbv")
        || dev.starts_with("tbt")
}

/// Parse /proc/net/route: (device, subnet) of every non-default route.
pub fn parse_routes(text: &str) -> Vec<(String, Subnet)> {
    let mut v = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dst), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        // The file holds addresses in host (little-endian) byte order.
        let dst = Ipv4Addr::from(dst.to_le_bytes());
        if mask == 0 {
            continue;
        }
        let prefix = mask.count_ones() as u8;
        v.push((f[0].to_string(), Subnet::new(dst, prefix)));
    }
    v
}

/// Subnets in use on this host (routes and interface addresses), twinbox's own
/// bridges excepted.
pub fn taken_subnets() -> Vec<Subnet> {
    let mut v: Vec<Subnet> = std::fs::read_to_string("/proc/net/route")
        .map(|t| parse_routes(&t))
        .unwrap_or_default()
        .into_iter()
        .filter(|(d, _)| !is_ours(d))
        .map(|(_, s)| s)
        .collect();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            if is_ours(&a.interface_name) || a.interface_name == "lo" {
                continue;
            }
            let ip = a
                .address
                .as_ref()
                .and_then(|x| x.as_sockaddr_in())
                .map(|x| x.ip());
            let mask = a
                .netmask
                .as_ref()
                .and_then(|x| x.as_sockaddr_in())
                .map(|x| x.ip());
            if let (Some(ip), Some(mask)) = (ip, mask) {
                let p = u32::from(mask).count_ones() as u8;
                if p > 0 {
                    v.push(Subnet::new(ip, p));
                }
            }
        }
    }
    v
}

fn write_sysctl(path: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turn IPv4 forwarding on if it is off, remembering that in `saved` so that
/// `restore_forwarding` can put it back.
pub fn enable_forwarding(saved: &Path) -> std::io::Result<()> {
    let cur = std::fs::read_to_string(IP_FORWARD)?;
    if cur.trim() == "1" {
        return Ok(());
    }
    if !saved.exists() {
        crate::util::fs::atomic_write(saved, cur.trim().as_bytes())?;
    }
    write_sysctl(IP_FORWARD, "1")
}

/// Put IPv4 forwarding back the way it was before twinbox turned it on.
pub fn restore_forwarding(saved: &Path) -> std::io::Result<()> {
    match std::fs::read_to_string(saved) {
        Ok(v) => {
            write_sysctl(IP_FORWARD, v.trim())?;
            std::fs::remove_file(saved)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Let packets DNAT'ed from 127.0.0.1 (published ports) leave through `bridge`.
pub fn set_route_localnet(bridge: &str) -> std::io::Result<()> {
    write_sysctl(
        &format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"),
        "1",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_little_endian_hex() {
        let t =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                 eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                 twinbox0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let r = parse_routes(t);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].1.to_string(), "192.168.2.0/24");
        assert_eq!(
            r[1],
            ("twinbox0".to_string(), "10.88.0.0/16".parse().unwrap())
        );
        assert!(is_ours(&r[1].0) && !is_ours("eth0"));
    }
}
