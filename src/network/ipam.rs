//! Address management, pure: subnets, overlap, the lowest free address, and a default
//! subnet that clashes with nothing already in use.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 subnet, `10.88.0.0/16`. The address is always the network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let s = Subnet { addr, prefix };
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & s.mask()),
            prefix,
        }
    }

    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix as u32)
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Two subnets overlap when one contains the other's network address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The first host address (Docker's gateway convention).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// Number of usable host addresses.
    pub fn hosts(&self) -> u64 {
        (1u64 << (32 - self.prefix as u32)).saturating_sub(2)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Subnet, String> {
        let bad = || format!("invalid subnet {s:?}: expected an IPv4 CIDR such as 10.90.0.0/16");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "invalid subnet {s:?}: the prefix must be between /8 and /30"
            ));
        }
        let n = Subnet::new(addr, prefix);
        if n.addr != addr {
            return Err(format!(
                "invalid subnet {s:?}: host bits are set (did you mean {n}?)"
            ));
        }
        Ok(n)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The lowest address of `subnet` that is not the network, broadcast, gateway or in
/// `used`.
pub fn allocate(subnet: &Subnet, gateway: Ipv4Addr, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let first = u32::from(subnet.addr) + 1;
    let last = u32::from(subnet.broadcast()).checked_sub(1)?;
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|ip| *ip != gateway && !used.contains(ip))
}

/// The first candidate subnet that overlaps none of `taken`.
pub fn pick_free(candidates: &[Subnet], taken: &[Subnet]) -> Option<Subnet> {
    candidates
        .iter()
        .find(|c| !taken.iter().any(|t| t.overlaps(c)))
        .copied()
}

/// Where networks are carved from when the user names no subnet: 10.88.0.0/16 for the
/// default bridge, then 10.89/16 … 10.127/16, then 172.30/16, 172.31/16.
pub fn candidates() -> Vec<Subnet> {
    let mut v: Vec<Subnet> = (88..=127)
        .map(|b| Subnet::new(Ipv4Addr::new(10, b, 0, 0), 16))
        .collect();
    v.push(Subnet::new(Ipv4Addr::new(172, 30, 0, 0), 16));
    v.push(Subnet::new(Ipv4Addr::new(172, 31, 0, 0), 16));
    v
}

/// A MAC derived from the address, Docker's way (02:42 + the four octets): stable,
/// locally administered, unique per address.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Subnet {
        x.parse().unwrap()
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(s("10.88.0.0/16").to_string(), "10.88.0.0/16");
        assert!("10.88.0.1/16"
            .parse::<Subnet>()
            .unwrap_err()
            .contains("host bits"));
        assert!("10.88.0.0".parse::<Subnet>().is_err());
        assert!("10.88.0.0/31".parse::<Subnet>().is_err());
        assert!("300.1.0.0/16".parse::<Subnet>().is_err());
    }

    #[test]
    fn overlap_both_ways() {
        assert!(s("10.88.0.0/16").overlaps(&s("10.88.5.0/24")));
        assert!(s("10.88.5.0/24").overlaps(&s("10.88.0.0/16")));
        assert!(!s("10.88.0.0/16").overlaps(&s("10.89.0.0/16")));
    }

    #[test]
    fn allocation_skips_gateway_and_used_and_ends() {
        let n = s("10.1.2.0/30"); // .1 gateway, .2 the only other host
        let gw = n.first_host();
        let mut used = BTreeSet::new();
        assert_eq!(allocate(&n, gw, &used), Some(Ipv4Addr::new(10, 1, 2, 2)));
        used.insert(Ipv4Addr::new(10, 1, 2, 2));
        assert_eq!(allocate(&n, gw, &used), None);
        // freed addresses are reused, lowest first
        let n = s("10.9.0.0/24");
        let used: BTreeSet<_> = [2, 3, 5]
            .iter()
            .map(|x| Ipv4Addr::new(10, 9, 0, *x))
            .collect();
        assert_eq!(
            allocate(&n, n.first_host(), &used),
            Some(Ipv4Addr::new(10, 9, 0, 4))
        );
    }

    #[test]
    fn default_avoids_what_is_taken() {
        let taken = [s("10.88.0.0/16"), s("10.0.0.0/8")];
        assert_eq!(pick_free(&candidates(), &taken), Some(s("172.30.0.0/16")));
        assert_eq!(pick_free(&candidates(), &[]), Some(s("10.88.0.0/16")));
    }

    #[test]
    fn mac_from_ip() {
        assert_eq!(
            mac_string(mac_for(Ipv4Addr::new(10, 88, 0, 2))),
            "02:42:0a:58:00:02"
        );
    }
}
