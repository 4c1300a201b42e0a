//! twinbox's packet-filter rules: one nftables table, `ip twinbox`, rendered whole from
//! the state (networks whose bridge exists, ports published by running containers) and
//! swapped in atomically in a single transaction. Removing it removes every rule.

use super::ipam::Subnet;
use super::NetworkError;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

pub const TABLE: &str = "twinbox";

/// A network as the rules see it.
#[derive(Clone, Debug, PartialEq)]
pub struct NetRule {
    pub bridge: String,
    pub subnet: Subnet,
}

/// A published port: traffic for (host_ip or any local address):host_port goes to
/// dest:dest_port.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: String,
    pub dest: Ipv4Addr,
    pub dest_port: u16,
}

fn elements(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" elements = {{ {} }};", items.join(", "))
    }
}

/// The whole table, replacing whatever was there; with no networks, just its removal.
pub fn render(nets: &[NetRule], ports: &[Published]) -> String {
    let mut s = format!("table ip {TABLE}\ndelete table ip {TABLE}\n");
    if nets.is_empty() {
        return s;
    }
    let any: Vec<String> = ports
        .iter()
        .filter(|p| p.host_ip.is_none())
        .map(|p| {
            format!(
                "{} . {} : {} . {}",
                p.proto, p.host_port, p.dest, p.dest_port
            )
        })
        .collect();
    let by_ip: Vec<String> = ports
        .iter()
        .filter_map(|p| {
            p.host_ip.map(|ip| {
                format!(
                    "{ip} . {} . {} : {} . {}",
                    p.proto, p.host_port, p.dest, p.dest_port
                )
            })
        })
        .collect();
    let bridges: Vec<String> = nets.iter().map(|n| format!("\"{}\"", n.bridge)).collect();
    s += &format!("table ip {TABLE} {{\n");
    s += &format!(
        "  map ports_any {{ type inet_proto . inet_service : ipv4_addr . inet_service;{} }}\n",
        elements(&any)
    );
    s += &format!(
        "  map ports_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;{} }}\n",
        elements(&by_ip)
    );
    let dnat = "    fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @ports_ip\n    \
                fib daddr type local dnat ip to meta l4proto . th dport map @ports_any\n";
    s += "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n";
    s += dnat;
    s += "  }\n  chain output {\n    type nat hook output priority -100; policy accept;\n";
    s += dnat;
    s += "  }\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n";
    // Published ports reached through 127.0.0.1 leave with the bridge's address.
    s += &format!(
        "    ip saddr 127.0.0.0/8 oifname {{ {} }} masquerade\n",
        bridges.join(", ")
    );
    for n in nets {
        // Outbound NAT, and hairpin (a container reaching a published port of its own
        // network through a host address).
        s += &format!(
            "    ip saddr {} oifname != \"{}\" masquerade\n    ct status dnat ip saddr {} oifname \"{}\" masquerade\n",
            n.subnet, n.bridge, n.subnet, n.bridge
        );
    }
    s += "  }\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n";
    // Networks are isolated from each other, like Docker's.
    for n in nets {
        let others: Vec<&String> = bridges
            .iter()
            .filter(|b| **b != format!("\"{}\"", n.bridge))
            .collect();
        if !others.is_empty() {
            s += &format!(
                "    iifname \"{}\" oifname {{ {} }} drop\n",
                n.bridge,
                others
                    .iter()
                    .map(|b| b.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    s += &format!(
        "    iifname {{ {0} }} accept\n    oifname {{ {0} }} ct state established,related accept\n",
        bridges.join(", ")
    );
    s += "  }\n}\n";
    s
}

/// Swap in the table for this state.
pub fn apply(nets: &[NetRule], ports: &[Published]) -> Result<(), NetworkError> {
    let script = render(nets, ports);
    let nft = ["/usr/sbin/nft", "/sbin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nft");
    // Success is read from the output, not from wait(): in a monitor, its reaper
    // thread may collect the exit status first.
    let mut child = Command::new("/bin/sh")
        .args(["-c", "\"$0\" -f - && echo TWINBOX-NFT-OK", nft])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            NetworkError::Nft(format!(
                "cannot run nft ({e}): install the nftables package"
            ))
        })?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(script.as_bytes());
    }
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let _ = child.wait();
    if !stdout.contains("TWINBOX-NFT-OK") {
        let first = stderr.lines().next().unwrap_or("failed").to_string();
        return Err(NetworkError::Nft(first));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_state_only_removes_the_table() {
        let s = render(&[], &[]);
        assert_eq!(s, "table ip twinbox\ndelete table ip twinbox\n");
    }

    #[test]
    fn networks_and_ports_render() {
        let nets = vec![
            NetRule {
                bridge: "twinbox0".into(),
                subnet: "10.88.0.0/16".parse().unwrap(),
            },
            NetRule {
                bridge: "tb-abc".into(),
                subnet: "10.89.0.0/16".parse().unwrap(),
            },
        ];
        let ports = vec![
            Published {
                host_ip: None,
                host_port: 8080,
                proto: "tcp".into(),
                dest: Ipv4Addr::new(10, 88, 0, 2),
                dest_port: 80,
            },
            Published {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 53,
                proto: "udp".into(),
                dest: Ipv4Addr::new(10, 89, 0, 2),
                dest_port: 5353,
            },
        ];
        let s = render(&nets, &ports);
        assert!(s.contains("elements = { tcp . 8080 : 10.88.0.2 . 80 };"));
        assert!(s.contains("elements = { 127.0.0.1 . udp . 53 : 10.89.0.2 . 5353 };"));
        assert!(s.contains("ip saddr 10.88.0.0/16 oifname != \"twinbox0\" masquerade"));
        assert!(s.contains("iifname \"twinbox0\" oifname { \"tb-abc\" } drop"));
        assert!(s.contains("iifname \"tb-abc\" oifname { \"twinbox0\" } drop"));
        assert!(s.starts_with("table ip twinbox\ndelete table ip twinbox\ntable ip twinbox {"));
    }
}
