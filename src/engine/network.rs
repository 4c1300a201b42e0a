//! `network create/ls/inspect/rm/prune/connect/disconnect`, and the address leases
//! containers take at `create` and give back at `rm`.

use super::{Engine, EngineError};
use crate::network::store::Network;
use crate::network::{host, ipam, plumb, NetworkError, NetworkStore, DEFAULT_NETWORK};
use crate::spec::{Interface, Isolation, NetworkMode};
use crate::state::ContainerRecord;
use serde_json::json;
use std::net::Ipv4Addr;

/// One line of `network ls`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NetworkSummary {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub scope: String,
    pub subnet: String,
}

/// The pre-defined networks that have no record: (name, driver).
const VIRTUAL: &[(&str, &str)] = &[("host", "host"), ("none", "null")];

fn virtual_id(name: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("twinbox-network-{name}")))
}

impl Engine {
    pub(crate) fn networks(&self) -> Result<NetworkStore, EngineError> {
        Ok(NetworkStore::open(&self.paths.root)?)
    }

    /// Lease an address on `network` for container `id` and describe the interface.
    pub(crate) fn lease_interface(
        &self,
        id: &str,
        network: &str,
        index: usize,
        aliases: Vec<String>,
        fixed: Option<Ipv4Addr>,
        isolation: Isolation,
    ) -> Result<Interface, EngineError> {
        let nets = self.networks()?;
        let locked = nets.lock()?;
        let mut net = locked.get_or_default(network, &host::taken_subnets)?;
        let store = &self.store;
        let ip = locked.lease(&mut net, id, fixed, &|c| store.load(c).is_ok())?;
        let kind = if isolation == Isolation::Vm {
            "tbt"
        } else {
            "tbv"
        };
        Ok(Interface {
            network: net.name.clone(),
            name: format!("eth{index}"),
            address: ip,
            prefix: net.subnet.prefix,
            gateway: net.gateway,
            mac: ipam::mac_for(ip),
            host_device: format!("{kind}{}{index}", &id[..11]),
            aliases,
        })
    }

    pub(crate) fn release_lease(&self, network: &str, id: &str) {
        if let Ok(nets) = self.networks() {
            if let Ok(l) = nets.lock() {
                let _ = l.release(network, id);
            }
        }
    }

    /// `network create`: the record and its bridge.
    pub fn network_create(
        &self,
        name: &str,
        driver: &str,
        subnet: Option<&str>,
        gateway: Option<&str>,
    ) -> Result<Network, EngineError> {
        if driver != "bridge" {
            return Err(EngineError::Invalid(format!(
                "driver {driver:?} cannot be used for new networks: only \"bridge\" (host and none are pre-defined)"
            )));
        }
        if !crate::network::valid_name(name) {
            return Err(EngineError::Invalid(format!(
                "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let subnet: Option<ipam::Subnet> = subnet
            .map(|s| s.parse().map_err(EngineError::Invalid))
            .transpose()?;
        let gateway: Option<Ipv4Addr> = gateway
            .map(|g| {
                g.parse()
                    .map_err(|_| EngineError::Invalid(format!("invalid gateway {g:?}")))
            })
            .transpose()?;
        if gateway.is_some() && subnet.is_none() {
            return Err(EngineError::Invalid("--gateway needs --subnet".into()));
        }
        let nets = self.networks()?;
        let locked = nets.lock()?;
        let net = locked.create(name, subnet, gateway, &host::taken_subnets())?;
        if let Err(e) = plumb::ensure_bridge(&locked, &self.store, &net) {
            let _ = locked.remove(&net);
            return Err(e.into());
        }
        Ok(net)
    }

    pub fn network_list(&self) -> Result<Vec<NetworkSummary>, EngineError> {
        let nets = self.networks()?;
        {
            // The default network always shows, as Docker's does.
            let l = nets.lock()?;
            l.get_or_default(DEFAULT_NETWORK, &host::taken_subnets)?;
        }
        let mut v: Vec<NetworkSummary> = nets
            .list()?
            .into_iter()
            .map(|n| NetworkSummary {
                id: n.id,
                name: n.name,
                driver: n.driver,
                scope: "local".into(),
                subnet: n.subnet.to_string(),
            })
            .collect();
        for (name, driver) in VIRTUAL {
            v.push(NetworkSummary {
                id: virtual_id(name),
                name: name.to_string(),
                driver: driver.to_string(),
                scope: "local".into(),
                subnet: String::new(),
            });
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// Containers (any state) with an interface on `net`.
    fn users_of(&self, net: &str) -> Result<Vec<ContainerRecord>, EngineError> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .filter(|r| r.spec.interfaces.iter().any(|i| i.network == net))
            .collect())
    }

    /// `network inspect`, Docker's field names.
    pub fn network_inspect(&self, key: &str) -> Result<serde_json::Value, EngineError> {
        if let Some((name, driver)) = VIRTUAL.iter().find(|(n, _)| *n == key) {
            let members: serde_json::Map<String, serde_json::Value> = self
                .list(false)?
                .into_iter()
                .filter(|r| r.spec.network.to_string() == *name)
                .map(|r| (r.id.clone(), json!({ "Name": r.name })))
                .collect();
            return Ok(json!({
                "Name": name, "Id": virtual_id(name), "Scope": "local", "Driver": driver,
                "IPAM": { "Driver": "default", "Config": [] }, "Containers": members,
            }));
        }
        let nets = self.networks()?;
        let n = if key == DEFAULT_NETWORK {
            nets.lock()?.get_or_default(key, &host::taken_subnets)?
        } else {
            nets.find(key)?
        };
        let mut members = serde_json::Map::new();
        for r in self.users_of(&n.name)? {
            for i in r.spec.interfaces.iter().filter(|i| i.network == n.name) {
                members.insert(
                    r.id.clone(),
                    json!({
                        "Name": r.name,
                        "State": r.state.status.to_string(),
                        "MacAddress": ipam::mac_string(i.mac),
                        "IPv4Address": format!("{}/{}", i.address, i.prefix),
                        "Aliases": i.aliases,
                        "HostDevice": i.host_device,
                    }),
                );
            }
        }
        Ok(json!({
            "Name": n.name,
            "Id": n.id,
            "Created": n.created.to_rfc3339(),
            "Scope": "local",
            "Driver": n.driver,
            "IPAM": { "Driver": "default", "Config": [ { "Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string() } ] },
            "Internal": false,
            "Containers": members,
            "Options": { "com.docker.network.bridge.name": n.bridge },
            "BridgeUp": crate::network::netlink::index_of(&n.bridge).is_some(),
            "Leases": n.leases.len(),
        }))
    }

    /// `network rm`: refuses a network any container still uses. The default network
    /// can be removed when unused: its bridge and rules go, and it comes back on the
    /// next `run`.
    pub fn network_remove(&self, key: &str) -> Result<String, EngineError> {
        if VIRTUAL.iter().any(|(n, _)| *n == key) {
            return Err(EngineError::Conflict(format!(
                "{key} is a pre-defined network and cannot be removed"
            )));
        }
        let nets = self.networks()?;
        let locked = nets.lock()?;
        let n = match nets.find(key) {
            Ok(n) => n,
            Err(NetworkError::NotFound(_)) if key == DEFAULT_NETWORK => {
                // Never used (or already removed): make sure nothing is left anyway.
                drop(locked);
                return Ok(key.to_string());
            }
            Err(e) => return Err(e.into()),
        };
        let users = self.users_of(&n.name)?;
        if !users.is_empty() {
            let names: Vec<String> = users.iter().map(|r| r.name.clone()).collect();
            return Err(NetworkError::InUse(n.name.clone(), names.join(", ")).into());
        }
        plumb::remove_bridge(&locked, &self.store, &n)?;
        locked.remove(&n)?;
        plumb::sync_rules(&locked, &self.store)?;
        Ok(n.name)
    }

    /// `network prune`: every user-defined network no container uses.
    pub fn network_prune(&self) -> Result<Vec<String>, EngineError> {
        let mut out = Vec::new();
        for n in self.networks()?.list()? {
            if n.is_default() || !self.users_of(&n.name)?.is_empty() {
                continue;
            }
            out.push(self.network_remove(&n.name)?);
        }
        Ok(out)
    }

    /// `network connect`: another interface, live for a running process container.
    pub fn network_connect(
        &self,
        network: &str,
        container: &str,
        aliases: Vec<String>,
        ip: Option<&str>,
    ) -> Result<(), EngineError> {
        let rec = self.get(container)?;
        let nets = self.networks()?;
        let net = if network == DEFAULT_NETWORK {
            nets.lock()?.get_or_default(network, &host::taken_subnets)?
        } else if VIRTUAL.iter().any(|(n, _)| *n == network) {
            return Err(EngineError::Invalid(format!(
                "a container cannot be connected to the {network} network"
            )));
        } else {
            nets.find(network)?
        };
        if rec.spec.network != NetworkMode::Bridge {
            return Err(EngineError::Conflict(format!(
                "container {} uses --network {}: it cannot join a bridge network",
                rec.name, rec.spec.network
            )));
        }
        if rec.spec.interfaces.iter().any(|i| i.network == net.name) {
            return Err(EngineError::Conflict(format!(
                "container {} is already connected to network {}",
                rec.name, net.name
            )));
        }
        if rec.spec.isolation == Isolation::Vm {
            if rec.is_active() {
                return Err(EngineError::Conflict(format!(
                    "container {} is a running microVM: its devices are fixed at boot; stop it first",
                    rec.name
                )));
            }
            if !rec.spec.interfaces.is_empty() {
                return Err(EngineError::Conflict(format!(
                    "container {} is a microVM with one network interface: disconnect it first",
                    rec.name
                )));
            }
        }
        if (net.is_default()) && (!aliases.is_empty() || ip.is_some()) {
            return Err(EngineError::Invalid(
                "aliases and --ip are supported only on user-defined networks".into(),
            ));
        }
        let fixed = ip
            .map(|i| {
                i.parse::<Ipv4Addr>()
                    .map_err(|_| EngineError::Invalid(format!("invalid IPv4 address {i:?}")))
            })
            .transpose()?;
        let index = (0..)
            .find(|n| {
                !rec.spec
                    .interfaces
                    .iter()
                    .any(|i| i.name == format!("eth{n}"))
            })
            .unwrap_or(0);
        let iface = self.lease_interface(
            &rec.id,
            &net.name,
            index,
            aliases,
            fixed,
            rec.spec.isolation,
        )?;
        let first = rec.spec.interfaces.is_empty();
        let plug = || -> Result<(), EngineError> {
            if rec.is_active() && rec.spec.isolation == Isolation::Process {
                let locked = nets.lock()?;
                let idx = plumb::ensure_bridge(&locked, &self.store, &net)?;
                let ns = std::path::PathBuf::from(format!("/proc/{}/ns/net", rec.state.pid));
                plumb::attach_veth(&iface, idx, &ns, first)?;
            }
            self.store.update(&rec.id, |r| {
                r.spec.interfaces.push(iface.clone());
                if net.name != DEFAULT_NETWORK {
                    r.spec.embedded_dns = r.spec.embedded_dns || first;
                }
            })?;
            Ok(())
        };
        if let Err(e) = plug() {
            let _ = plumb::delete_device(&iface.host_device);
            self.release_lease(&net.name, &rec.id);
            return Err(e);
        }
        Ok(())
    }

    /// `network disconnect`.
    pub fn network_disconnect(&self, network: &str, container: &str) -> Result<(), EngineError> {
        let rec = self.get(container)?;
        let name = match self.networks()?.find(network) {
            Ok(n) => n.name,
            Err(_) if rec.spec.interfaces.iter().any(|i| i.network == network) => {
                network.to_string()
            }
            Err(e) => return Err(e.into()),
        };
        let Some(iface) = rec
            .spec
            .interfaces
            .iter()
            .find(|i| i.network == name)
            .cloned()
        else {
            return Err(EngineError::Conflict(format!(
                "container {} is not connected to network {name}",
                rec.name
            )));
        };
        if rec.is_active() && rec.spec.isolation == Isolation::Vm {
            return Err(EngineError::Conflict(format!(
                "container {} is a running microVM: its devices are fixed at boot; stop it first",
                rec.name
            )));
        }
        if rec.is_active() {
            plumb::delete_device(&iface.host_device)?;
        }
        self.store
            .update(&rec.id, |r| r.spec.interfaces.retain(|i| i.network != name))?;
        self.release_lease(&name, &rec.id);
        Ok(())
    }
}
