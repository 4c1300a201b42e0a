//! The host side of networks: bridges, veth pairs, TAP devices, and keeping the
//! nftables table and ip_forward in step with which bridges exist.

use super::netlink::{self, Netlink};
use super::nft::{self, NetRule, Published};
use super::store::{Locked, Network};
use super::{host, NetworkError};
use crate::spec::Interface;
use crate::state::Store;
use std::fs::File;
use std::path::Path;

fn nl() -> Result<Netlink, NetworkError> {
    Netlink::open().map_err(NetworkError::host("netlink socket"))
}

fn forward_saved(nets: &Locked<'_>) -> std::path::PathBuf {
    nets.store().dir().join("ip_forward.saved")
}

/// Make sure `net`'s bridge exists and is up with its gateway address. Creating it also
/// turns on forwarding and installs the rules. Call with the networks lock held.
pub fn ensure_bridge(
    nets: &Locked<'_>,
    containers: &Store,
    net: &Network,
) -> Result<u32, NetworkError> {
    if let Some(i) = netlink::index_of(&net.bridge) {
        return Ok(i);
    }
    let mut n = nl()?;
    n.add_bridge(&net.bridge)
        .map_err(NetworkError::host(format!("create bridge {}", net.bridge)))?;
    let mut setup = || -> Result<u32, NetworkError> {
        let idx = netlink::index_of(&net.bridge).ok_or_else(|| {
            NetworkError::Invalid(format!(
                "bridge {} vanished right after its creation",
                net.bridge
            ))
        })?;
        n.add_address(idx, net.gateway, net.subnet.prefix)
            .map_err(NetworkError::host(format!(
                "address {} on {}",
                net.gateway, net.bridge
            )))?;
        n.set_up(idx, true)
            .map_err(NetworkError::host(format!("bring up {}", net.bridge)))?;
        host::set_route_localnet(&net.bridge).map_err(NetworkError::host(format!(
            "route_localnet on {}",
            net.bridge
        )))?;
        host::enable_forwarding(&forward_saved(nets))
            .map_err(NetworkError::host("enable IPv4 forwarding"))?;
        sync_rules(nets, containers)?;
        Ok(idx)
    };
    match setup() {
        Ok(i) => Ok(i),
        Err(e) => {
            let _ = remove_bridge(nets, containers, net);
            Err(e)
        }
    }
}

/// Delete `net`'s bridge if it exists; with the last bridge gone, the rules go and
/// forwarding is restored.
pub fn remove_bridge(
    nets: &Locked<'_>,
    containers: &Store,
    net: &Network,
) -> Result<(), NetworkError> {
    delete_device(&net.bridge)?;
    sync_rules(nets, containers)
}

/// Delete a link by name if it exists.
pub fn delete_device(name: &str) -> Result<(), NetworkError> {
    if let Some(i) = netlink::index_of(name) {
        match nl()?.delete_link(i) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
            Err(e) => return Err(NetworkError::host(format!("delete {name}"))(e)),
        }
    }
    Ok(())
}

/// Rebuild the nftables table from the state: every network whose bridge exists, every
/// port published by a running container. No bridges: no table, forwarding restored.
pub fn sync_rules(nets: &Locked<'_>, containers: &Store) -> Result<(), NetworkError> {
    let all = nets.store().list()?;
    let live: Vec<&Network> = all
        .iter()
        .filter(|n| netlink::index_of(&n.bridge).is_some())
        .collect();
    let rules: Vec<NetRule> = live
        .iter()
        .map(|n| NetRule {
            bridge: n.bridge.clone(),
            subnet: n.subnet,
        })
        .collect();
    let mut ports = Vec::new();
    if !rules.is_empty() {
        for rec in containers.list().unwrap_or_default() {
            if !rec.is_active() {
                continue;
            }
            let Some(ip) = rec.spec.interfaces.first().map(|i| i.address) else {
                continue;
            };
            for p in &rec.state.ports {
                ports.push(Published {
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    proto: p.proto.clone(),
                    dest: ip,
                    dest_port: p.container_port,
                });
            }
        }
    }
    nft::apply(&rules, &ports)?;
    if rules.is_empty() {
        host::restore_forwarding(&forward_saved(nets))
            .map_err(NetworkError::host("restore IPv4 forwarding"))?;
    }
    Ok(())
}

/// Give a process container its interface: a veth pair whose host end joins the
/// bridge and whose other end, named as `iface` says, appears in the namespace
/// `netns` (e.g. /proc/<pid>/ns/net) with its address, up, with the default route if
/// `default_route`.
pub fn attach_veth(
    iface: &Interface,
    bridge_index: u32,
    netns: &Path,
    default_route: bool,
) -> Result<(), NetworkError> {
    let ns = File::open(netns).map_err(NetworkError::host(format!("open {}", netns.display())))?;
    // The previous run's device may still be on its way out (removed after the exit).
    delete_device(&iface.host_device)?;
    use std::os::fd::AsRawFd;
    nl()?
        .add_veth(
            &iface.host_device,
            bridge_index,
            &iface.name,
            ns.as_raw_fd(),
            iface.mac,
        )
        .map_err(NetworkError::host(format!(
            "create veth {}",
            iface.host_device
        )))?;
    let inside = netlink::in_netns(netns, || {
        let mut n = Netlink::open()?;
        let idx = netlink::index_of(&iface.name)
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENODEV))?;
        n.add_address(idx, iface.address, iface.prefix)?;
        n.set_up(idx, true)?;
        if let Some(lo) = netlink::index_of("lo") {
            n.set_up(lo, true)?;
        }
        if default_route {
            n.add_default_route(iface.gateway)?;
        }
        Ok(())
    });
    if let Err(e) = inside {
        let _ = delete_device(&iface.host_device);
        return Err(NetworkError::host(format!(
            "configure {} in the container",
            iface.name
        ))(e));
    }
    Ok(())
}

/// Create a microVM's TAP device on the bridge, up. Returns the open TAP (the device
/// lives as long as this file).
pub fn open_tap(iface: &Interface, bridge_index: u32) -> Result<File, NetworkError> {
    delete_device(&iface.host_device)?;
    let tap = super::tap::open(&iface.host_device).map_err(NetworkError::host(format!(
        "create TAP {}",
        iface.host_device
    )))?;
    let idx = netlink::index_of(&iface.host_device)
        .ok_or_else(|| NetworkError::Invalid(format!("TAP {} vanished", iface.host_device)))?;
    let mut n = nl()?;
    n.set_master(idx, bridge_index)
        .map_err(NetworkError::host(format!(
            "attach {} to the bridge",
            iface.host_device
        )))?;
    n.set_up(idx, true).map_err(NetworkError::host(format!(
        "bring up {}",
        iface.host_device
    )))?;
    Ok(tap)
}
