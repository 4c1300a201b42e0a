//! Published ports: `-p [IP:][HOSTPORT:]CTRPORT[/tcp|udp]` parsing, and reserving the
//! host port with a bound (never listening) socket for as long as the container runs,
//! so that a port already taken fails the start and nobody else takes it meanwhile.

use super::NetworkError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// None: every address of the host.
    pub host_ip: Option<Ipv4Addr>,
    /// 0: any free port, chosen at start.
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp".
    pub proto: String,
}

impl fmt::Display for PortMapping {
    /// Docker's `port` format: `80/tcp -> 0.0.0.0:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} -> {}:{}",
            self.container_port,
            self.proto,
            self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.host_port
        )
    }
}

fn port_range(s: &str, what: &str, spec: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid {what} {s:?} in -p {spec:?}");
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if b < a || (a == 0 && what == "container port") {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parse one `-p` value into its mappings (a range gives several).
pub fn parse(spec: &str) -> Result<Vec<PortMapping>, String> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if proto != "tcp" && proto != "udp" {
        return Err(format!(
            "invalid protocol {proto:?} in -p {spec:?}: use tcp or udp"
        ));
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => (None, "", *c),
        [h, c] => (None, *h, *c),
        [i, h, c] => (Some(*i), *h, *c),
        _ => return Err(format!("invalid port specification {spec:?}")),
    };
    let host_ip = match ip {
        None | Some("") | Some("0.0.0.0") => None,
        Some(i) => Some(
            i.parse::<Ipv4Addr>()
                .map_err(|_| format!("invalid host address {i:?} in -p {spec:?} (IPv4 only)"))?,
        ),
    };
    let (c0, c1) = port_range(ctr, "container port", spec)?;
    let hosts = if host.is_empty() {
        None
    } else {
        Some(port_range(host, "host port", spec)?)
    };
    if let Some((h0, h1)) = hosts {
        if h1 - h0 != c1 - c0 && h0 != h1 {
            return Err(format!(
                "invalid -p {spec:?}: host and container port ranges differ in length"
            ));
        }
    }
    Ok((c0..=c1)
        .enumerate()
        .map(|(i, c)| PortMapping {
            host_ip,
            host_port: match hosts {
                None => 0,
                Some((h0, h1)) if h0 == h1 && c0 != c1 => h0,
                Some((h0, _)) => h0 + i as u16,
            },
            container_port: c,
            proto: proto.clone(),
        })
        .collect())
}

/// Parse an image's `ExposedPorts` key (`80/tcp`).
pub fn parse_exposed(key: &str) -> Option<PortMapping> {
    let (p, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    Some(PortMapping {
        host_ip: None,
        host_port: 0,
        container_port: p.parse().ok()?,
        proto: proto.to_string(),
    })
}

/// A host port held for a running container.
#[derive(Debug)]
pub struct Reservation {
    _fd: OwnedFd,
    pub mapping: PortMapping,
}

/// Bind every mapping's host port (choosing one where it is 0). Fails, holding nothing,
/// on the first port that is taken.
pub fn reserve(maps: &[PortMapping]) -> Result<Vec<Reservation>, NetworkError> {
    let mut out = Vec::new();
    for m in maps {
        out.push(reserve_one(m)?);
    }
    Ok(out)
}

fn reserve_one(m: &PortMapping) -> Result<Reservation, NetworkError> {
    let ty = if m.proto == "udp" {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    // SAFETY: socket(2) with constant arguments; the fd is owned right after.
    let fd = unsafe { libc::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(NetworkError::host("socket for a published port")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let ip = m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: m.host_port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: bind(2) reads `len` bytes of our sockaddr_in.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            len,
        )
    } != 0
    {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EADDRINUSE) {
            return Err(NetworkError::Invalid(format!(
                "cannot publish {ip}:{}/{}: the host port is already in use",
                m.host_port, m.proto
            )));
        }
        return Err(NetworkError::Host {
            what: format!("cannot publish {ip}:{}/{}", m.host_port, m.proto),
            source: e,
        });
    }
    let mut got: libc::sockaddr_in = sa;
    let mut glen = len;
    // SAFETY: getsockname(2) writes at most `glen` bytes into our sockaddr_in.
    unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut got as *mut libc::sockaddr_in).cast(),
            &mut glen,
        )
    };
    let mut mapping = m.clone();
    mapping.host_port = u16::from_be(got.sin_port);
    Ok(Reservation { _fd: fd, mapping })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> PortMapping {
        let v = parse(s).unwrap();
        assert_eq!(v.len(), 1);
        v[0].clone()
    }

    #[test]
    fn docker_forms() {
        let m = one("8080:80");
        assert_eq!(
            (m.host_ip, m.host_port, m.container_port, m.proto.as_str()),
            (None, 8080, 80, "tcp")
        );
        let m = one("127.0.0.1:8080:80/udp");
        assert_eq!(m.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(m.proto, "udp");
        assert_eq!(one("80").host_port, 0);
        assert_eq!(one("127.0.0.1::80").host_port, 0);
        assert_eq!(one("0.0.0.0:81:80").host_ip, None);
        assert_eq!(one("8080:80").to_string(), "80/tcp -> 0.0.0.0:8080");
    }

    #[test]
    fn ranges_expand() {
        let v = parse("9000-9002:80-82").unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!((v[2].host_port, v[2].container_port), (9002, 82));
        assert!(parse("9000-9001:80-82").is_err());
    }

    #[test]
    fn bad_input() {
        for s in [
            "",
            "x:80",
            "8080:80/sctp",
            "1:2:3:4",
            "8080:0",
            "a.b.c.d:1:2",
            "70000:80",
        ] {
            assert!(parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn exposed_keys() {
        assert_eq!(parse_exposed("53/udp").unwrap().proto, "udp");
        assert_eq!(parse_exposed("80").unwrap().container_port, 80);
    }
}
