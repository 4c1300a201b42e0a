//! Network records and their address leases, under `<root>/networks`.
//!
//! Each network is one JSON file written atomically; every change happens under one
//! lock (`networks/.lock`), so two `run`s never hand out the same address. A lease
//! names the container holding it; leases whose container no longer exists (a crash
//! between steps) are reclaimed on the next allocation.

use super::ipam::{self, Subnet};
use super::NetworkError;
use crate::util::fs::{atomic_write, Lock};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The pre-defined bridge network every container joins unless told otherwise.
pub const DEFAULT_NETWORK: &str = "bridge";
/// Its bridge device.
pub const DEFAULT_BRIDGE: &str = "twinbox0";

/// One bridge network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// The bridge device on the host.
    pub bridge: String,
    pub created: DateTime<Utc>,
    /// Address -> id of the container holding it.
    #[serde(default)]
    pub leases: BTreeMap<Ipv4Addr, String>,
}

impl Network {
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_NETWORK
    }
}

#[derive(Clone, Debug)]
pub struct NetworkStore {
    dir: PathBuf,
}

/// Proof that the networks lock is held.
#[derive(Debug)]
pub struct Locked<'a> {
    store: &'a NetworkStore,
    _lock: Lock,
}

impl NetworkStore {
    pub fn open(root: &Path) -> Result<NetworkStore, NetworkError> {
        let dir = root.join("networks");
        std::fs::create_dir_all(&dir).map_err(NetworkError::io(&dir))?;
        Ok(NetworkStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn lock(&self) -> Result<Locked<'_>, NetworkError> {
        let p = self.dir.join(".lock");
        let l = Lock::exclusive(&p).map_err(NetworkError::io(&p))?;
        Ok(Locked {
            store: self,
            _lock: l,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Every network record (not the virtual `host` and `none`), by name.
    pub fn list(&self) -> Result<Vec<Network>, NetworkError> {
        let mut v = Vec::new();
        let rd = std::fs::read_dir(&self.dir).map_err(NetworkError::io(&self.dir))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            v.push(Self::read(&p)?);
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn read(p: &Path) -> Result<Network, NetworkError> {
        let data = std::fs::read(p).map_err(NetworkError::io(p))?;
        serde_json::from_slice(&data).map_err(|e| NetworkError::Corrupt(p.to_path_buf(), e))
    }

    /// A network by name, full id or unique id prefix.
    pub fn find(&self, key: &str) -> Result<Network, NetworkError> {
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.name == key || n.id == key) {
            return Ok(n.clone());
        }
        let m: Vec<&Network> = all.iter().filter(|n| n.id.starts_with(key)).collect();
        match m.as_slice() {
            [one] if !key.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(NetworkError::NotFound(key.to_string())),
            _ => Err(NetworkError::Ambiguous(key.to_string())),
        }
    }
}

impl Locked<'_> {
    pub fn store(&self) -> &NetworkStore {
        self.store
    }

    pub fn save(&self, n: &Network) -> Result<(), NetworkError> {
        let p = self.store.path(&n.name);
        let data = serde_json::to_vec_pretty(n).map_err(|e| NetworkError::Corrupt(p.clone(), e))?;
        atomic_write(&p, &data).map_err(NetworkError::io(&p))
    }

    pub fn remove(&self, n: &Network) -> Result<(), NetworkError> {
        let p = self.store.path(&n.name);
        std::fs::remove_file(&p).map_err(NetworkError::io(&p))
    }

    /// Create a network record. `subnet` None: the first candidate that clashes with
    /// no other network and nothing on the host.
    pub fn create(
        &self,
        name: &str,
        subnet: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
        host_taken: &[Subnet],
    ) -> Result<Network, NetworkError> {
        if self.store.list()?.iter().any(|n| n.name == name) || ["host", "none"].contains(&name) {
            return Err(NetworkError::Exists(name.to_string()));
        }
        let others: Vec<Subnet> = self.store.list()?.iter().map(|n| n.subnet).collect();
        let subnet = match subnet {
            Some(s) => {
                if let Some(o) = self
                    .store
                    .list()?
                    .into_iter()
                    .find(|n| n.subnet.overlaps(&s))
                {
                    return Err(NetworkError::Overlap(s, o.name, o.subnet));
                }
                if let Some(h) = host_taken.iter().find(|h| h.overlaps(&s)) {
                    return Err(NetworkError::HostOverlap(s, *h));
                }
                s
            }
            None => {
                let mut taken = others;
                taken.extend_from_slice(host_taken);
                if name != DEFAULT_NETWORK {
                    // 10.88.0.0/16 stays the default network's, even before it exists.
                    taken.push(ipam::candidates()[0]);
                }
                ipam::pick_free(&ipam::candidates(), &taken).ok_or(NetworkError::NoFreeSubnet)?
            }
        };
        let gateway = gateway.unwrap_or_else(|| subnet.first_host());
        if !subnet.contains(gateway) || gateway == subnet.addr || gateway == subnet.broadcast() {
            return Err(NetworkError::Invalid(format!(
                "gateway {gateway} is not a host address of {subnet}"
            )));
        }
        let id = crate::util::ids::new_id();
        let bridge = if name == DEFAULT_NETWORK {
            DEFAULT_BRIDGE.to_string()
        } else {
            format!("tb-{}", &id[..12])
        };
        let n = Network {
            id,
            name: name.to_string(),
            driver: "bridge".into(),
            subnet,
            gateway,
            bridge,
            created: Utc::now(),
            leases: BTreeMap::new(),
        };
        self.save(&n)?;
        Ok(n)
    }

    /// The named network; the default one is created on first use.
    pub fn get_or_default(
        &self,
        name: &str,
        host_taken: &dyn Fn() -> Vec<Subnet>,
    ) -> Result<Network, NetworkError> {
        match self.store.find(name) {
            Ok(n) => Ok(n),
            Err(NetworkError::NotFound(_)) if name == DEFAULT_NETWORK => {
                self.create(DEFAULT_NETWORK, None, None, &host_taken())
            }
            Err(e) => Err(e),
        }
    }

    /// Lease an address on `net` to `container` (`want`: a fixed address). Leases of
    /// containers for which `exists` says no are reclaimed first.
    pub fn lease(
        &self,
        net: &mut Network,
        container: &str,
        want: Option<Ipv4Addr>,
        exists: &dyn Fn(&str) -> bool,
    ) -> Result<Ipv4Addr, NetworkError> {
        net.leases.retain(|_, c| c == container || exists(c));
        let used: BTreeSet<Ipv4Addr> = net.leases.keys().copied().collect();
        let ip = match want {
            Some(ip) => {
                if !net.subnet.contains(ip)
                    || ip == net.gateway
                    || ip == net.subnet.addr
                    || ip == net.subnet.broadcast()
                {
                    return Err(NetworkError::Invalid(format!(
                        "address {ip} is not a free host address of {} ({})",
                        net.name, net.subnet
                    )));
                }
                if let Some(c) = net.leases.get(&ip) {
                    return Err(NetworkError::AddressInUse(
                        ip,
                        c[..12.min(c.len())].to_string(),
                    ));
                }
                ip
            }
            None => ipam::allocate(&net.subnet, net.gateway, &used)
                .ok_or_else(|| NetworkError::Exhausted(net.name.clone()))?,
        };
        net.leases.insert(ip, container.to_string());
        self.save(net)?;
        Ok(ip)
    }

    /// Give back every address `container` holds on `net`.
    pub fn release(&self, net_name: &str, container: &str) -> Result<(), NetworkError> {
        let mut net = match self.store.find(net_name) {
            Ok(n) => n,
            Err(NetworkError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let before = net.leases.len();
        net.leases.retain(|_, c| c != container);
        if net.leases.len() != before {
            self.save(&net)?;
        }
        Ok(())
    }
}
