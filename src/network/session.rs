//! A container's network for one run, as its monitor drives it: bridges made sure of,
//! host ports reserved, /etc/hosts with links, devices created for the backend, rules
//! synced once the container runs, and everything host-side removed at its end.

use super::dns::{self, Resolver};
use super::plumb;
use super::ports::{self, Reservation};
use super::store::NetworkStore;
use super::NetworkError;
use crate::spec::NetworkMode;
use crate::state::{ContainerRecord, Store};
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::Path;

/// What a run of a container holds on the host's network.
#[derive(Debug)]
pub struct Session {
    /// Bridge index per interface (same order as `spec.interfaces`).
    pub bridges: Vec<u32>,
    pub reservations: Vec<Reservation>,
}

/// Make the bridges exist, reserve the ports, write /etc/hosts (with links). Nothing is
/// held on error.
pub fn prepare(root: &Path, store: &Store, rec: &ContainerRecord) -> Result<Session, NetworkError> {
    let mut s = Session {
        bridges: Vec::new(),
        reservations: Vec::new(),
    };
    if rec.spec.network != NetworkMode::Bridge {
        return Ok(s);
    }
    {
        let nets = NetworkStore::open(root)?;
        let locked = nets.lock()?;
        for i in &rec.spec.interfaces {
            let net = nets.find(&i.network)?;
            s.bridges.push(plumb::ensure_bridge(&locked, store, &net)?);
        }
    }
    s.reservations = ports::reserve(&rec.ports)?;
    Ok(s)
}

/// /etc/hosts for a container: localhost, itself, and its links (a link to a container
/// that is not running is an error, as in Docker).
pub fn hosts_file(store: &Store, rec: &ContainerRecord) -> Result<String, NetworkError> {
    let mut h = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match rec.spec.interfaces.first() {
        Some(i) => h += &format!("{}\t{}\n", i.address, rec.spec.hostname),
        None => h += &format!("127.0.1.1\t{}\n", rec.spec.hostname),
    }
    for (name, alias) in &rec.links {
        let other = store
            .resolve(name)
            .and_then(|id| store.load(&id))
            .map_err(|_| {
                NetworkError::Invalid(format!("cannot link to {name}: no such container"))
            })?;
        if !other.is_active() {
            return Err(NetworkError::Invalid(format!(
                "cannot link to {name}: the container is not running"
            )));
        }
        let ip = other
            .spec
            .interfaces
            .iter()
            .find(|o| rec.spec.interfaces.iter().any(|m| m.network == o.network))
            .map(|o| o.address)
            .ok_or_else(|| {
                NetworkError::Invalid(format!(
                    "cannot link to {name}: it is on none of this container's networks"
                ))
            })?;
        let mut names = vec![alias.clone()];
        if alias != &other.name {
            names.push(other.name.clone());
        }
        names.push(other.short_id().to_string());
        h += &format!("{ip}\t{}\n", names.join(" "));
    }
    Ok(h)
}

/// The embedded DNS responder's sockets at 127.0.0.11:53 inside a container.
#[derive(Debug)]
pub struct DnsSockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

/// Process containers: create every interface in the namespace of `pid`, then (user
/// networks) the embedded DNS responder's sockets at 127.0.0.11:53 inside it.
pub fn attach_process(
    rec: &ContainerRecord,
    s: &Session,
    pid: i32,
) -> Result<Option<DnsSockets>, NetworkError> {
    let ns = format!("/proc/{pid}/ns/net");
    let ns = Path::new(&ns);
    for (n, (i, idx)) in rec.spec.interfaces.iter().zip(&s.bridges).enumerate() {
        if let Err(e) = plumb::attach_veth(i, *idx, ns, n == 0) {
            for j in &rec.spec.interfaces[..n] {
                let _ = plumb::delete_device(&j.host_device);
            }
            return Err(e);
        }
    }
    if !rec.spec.embedded_dns {
        return Ok(None);
    }
    super::netlink::in_netns(ns, || {
        Ok(DnsSockets {
            udp: UdpSocket::bind((crate::spec::EMBEDDED_DNS, 53))?,
            tcp: TcpListener::bind((crate::spec::EMBEDDED_DNS, 53))?,
        })
    })
    .map(Some)
    .map_err(NetworkError::host("the embedded DNS sockets"))
}

/// MicroVMs: the TAP of the (single) interface, on its bridge.
pub fn attach_vm(rec: &ContainerRecord, s: &Session) -> Result<Option<File>, NetworkError> {
    match (rec.spec.interfaces.as_slice(), s.bridges.first()) {
        ([], _) => Ok(None),
        ([i], Some(idx)) => plumb::open_tap(i, *idx).map(Some),
        _ => Err(NetworkError::Invalid(
            "a microVM has one network interface: disconnect it from all networks but one".into(),
        )),
    }
}

/// After the container runs: publish its ports (its record already says running and
/// which host ports it holds).
pub fn publish(root: &Path, store: &Store) -> Result<(), NetworkError> {
    let nets = NetworkStore::open(root)?;
    let locked = nets.lock()?;
    plumb::sync_rules(&locked, store)
}

/// At the end of a run (or when its monitor was found dead): its ports are
/// unpublished if it had any (its record must no longer say running).
pub fn unpublish(root: &Path, store: &Store, had_ports: bool) {
    if had_ports {
        let _ = publish(root, store);
    }
}

/// The container's host-side devices go. Unregistering a device waits for RCU grace
/// periods (25-50 ms on these hosts), so the monitor does this after it has reported
/// the exit; the kernel would also remove a veth with its namespace, and a TAP with
/// the VMM's descriptor.
pub fn remove_devices(rec: &ContainerRecord) {
    for i in &rec.spec.interfaces {
        let _ = plumb::delete_device(&i.host_device);
    }
}

/// Give back every address the container leased (at `rm`).
pub fn release_leases(root: &Path, rec: &ContainerRecord) {
    if rec.spec.interfaces.is_empty() {
        return;
    }
    let Ok(nets) = NetworkStore::open(root) else {
        return;
    };
    let Ok(locked) = nets.lock() else {
        return;
    };
    for i in &rec.spec.interfaces {
        let _ = locked.release(&i.network, &rec.id);
    }
}

/// Names of the containers on the asker's networks, answered from the state store.
#[derive(Debug)]
pub struct StoreResolver {
    pub store: Store,
    /// The asking container.
    pub id: String,
    pub upstream: Vec<Ipv4Addr>,
}

impl StoreResolver {
    pub fn new(store: Store, id: &str) -> StoreResolver {
        let upstream = std::fs::read_to_string("/etc/resolv.conf")
            .map(|t| dns::nameservers(&t))
            .unwrap_or_default();
        StoreResolver {
            store,
            id: id.to_string(),
            upstream,
        }
    }
}

/// Does `name` (lower-case) name this container on this interface?
fn answers_to(rec: &ContainerRecord, aliases: &[String], name: &str) -> bool {
    let eq = |s: &str| !s.is_empty() && s.eq_ignore_ascii_case(name);
    eq(&rec.name)
        || eq(&rec.spec.hostname)
        || eq(rec.short_id())
        || eq(&rec.id)
        || aliases.iter().any(|a| eq(a))
}

impl Resolver for StoreResolver {
    fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        let me = self.store.load(&self.id).ok()?;
        let mine: Vec<&str> = me
            .spec
            .interfaces
            .iter()
            .map(|i| i.network.as_str())
            .collect();
        let mut ips = Vec::new();
        for rec in self.store.list().ok()? {
            if !rec.is_active() {
                continue;
            }
            for i in &rec.spec.interfaces {
                if mine.contains(&i.network.as_str())
                    && answers_to(&rec, &i.aliases, name)
                    && !ips.contains(&i.address)
                {
                    ips.push(i.address);
                }
            }
        }
        (!ips.is_empty()).then_some(ips)
    }

    fn forward(&self, query: &[u8]) -> Option<Vec<u8>> {
        dns::forward_udp(&self.upstream, query)
    }
}
