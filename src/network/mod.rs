//! Networks for both isolation models: bridges with NAT, address leases, veth pairs for
//! process containers and TAP devices for microVMs, published ports, and an embedded
//! DNS responder so containers on a user network find each other by name.
//!
//! Everything twinbox does to the host's network lives in three places that are
//! removed with it: the bridge devices (`twinbox0`, `tb-<id>`), the per-container
//! devices (`tbv…` veths, `tbt…` TAPs), and one nftables table, `ip twinbox`, rebuilt
//! from the state store on every change.

pub mod dns;
pub mod host;
pub mod ipam;
pub mod netlink;
pub mod nft;
pub mod plumb;
pub mod ports;
pub mod session;
pub mod store;
pub mod tap;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub use store::{Network, NetworkStore, DEFAULT_BRIDGE, DEFAULT_NETWORK};

#[derive(Debug, Error)]
pub enum NetworkError {
    #[error("network {0} not found")]
    NotFound(String),
    #[error("network name {0:?} is ambiguous: it matches several networks")]
    Ambiguous(String),
    #[error("network with name {0} already exists")]
    Exists(String),
    #[error("subnet {0} overlaps with network {1} ({2})")]
    Overlap(ipam::Subnet, String, ipam::Subnet),
    #[error("subnet {0} overlaps with {1}, which is in use on this host")]
    HostOverlap(ipam::Subnet, ipam::Subnet),
    #[error("no free subnet left for a new network: name one with --subnet")]
    NoFreeSubnet,
    #[error("no free address left on network {0}")]
    Exhausted(String),
    #[error("address {0} is already in use by container {1}")]
    AddressInUse(Ipv4Addr, String),
    #[error("network {0} has active endpoints ({1}): remove or disconnect them first")]
    InUse(String, String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what}")]
    Host {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nftables: {0}")]
    Nft(String),
    #[error("network state I/O at {0}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("corrupt network record {0}")]
    Corrupt(PathBuf, #[source] serde_json::Error),
}

impl NetworkError {
    pub fn io(p: &Path) -> impl FnOnce(std::io::Error) -> NetworkError + '_ {
        move |e| NetworkError::Io(p.to_path_buf(), e)
    }

    pub fn host(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
        let what = what.into();
        move |source| NetworkError::Host { what, source }
    }
}

/// A network name users may pick: Docker's rule.
pub fn valid_name(n: &str) -> bool {
    crate::util::ids::valid_name(n)
}
