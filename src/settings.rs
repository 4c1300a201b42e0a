//! twinbox's settings file, in the shape of Docker's daemon.json:
//! `/etc/twinbox/daemon.json`, or the file `$TWINBOX_CONFIG` names. A missing file
//! means the defaults; a malformed one, or an unknown key (a typo), is an error rather
//! than a silently ignored setting.
//!
//! ```json
//! { "insecure-registries": ["registry.lan:5000", "10.0.0.0/8"] }
//! ```

use serde::Deserialize;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use thiserror::Error;

pub const DEFAULT_PATH: &str = "/etc/twinbox/daemon.json";

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: insecure-registries: {entry:?} is neither HOST[:PORT] nor an IP network (ADDR/BITS)")]
    BadEntry { path: PathBuf, entry: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Registries spoken to over plain HTTP: `HOST[:PORT]` exactly, or every registry
    /// whose address falls in a network `ADDR/BITS`. (localhost and 127.0.0.0/8 always
    /// are, as in Docker.)
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// Docker's `userns-remap`: `default` (the `twinbox` user's subordinate ids) or
    /// `USER[:GROUP]`. Process containers then run remapped unless `--userns host`.
    #[serde(default)]
    pub userns_remap: Option<String>,
}

/// Where the settings live.
pub fn path() -> PathBuf {
    std::env::var_os("TWINBOX_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// Read the settings (the defaults when there is no file).
pub fn load() -> Result<Settings, SettingsError> {
    load_from(path())
}

fn load_from(path: PathBuf) -> Result<Settings, SettingsError> {
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(source) => return Err(SettingsError::Read { path, source }),
    };
    let s: Settings = serde_json::from_slice(&data).map_err(|source| SettingsError::Parse {
        path: path.clone(),
        source,
    })?;
    for e in &s.insecure_registries {
        if !valid_entry(e) {
            return Err(SettingsError::BadEntry {
                path,
                entry: e.clone(),
            });
        }
    }
    Ok(s)
}

fn valid_entry(e: &str) -> bool {
    match e.split_once('/') {
        Some(_) => parse_net(e).is_some(),
        None => {
            !e.is_empty()
                && !e.contains("://")
                && e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c))
        }
    }
}

fn parse_net(e: &str) -> Option<(IpAddr, u8)> {
    let (a, b) = e.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let bits: u8 = b.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

fn in_net(ip: IpAddr, (net, bits): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `host` without its port (and without brackets around an IPv6 address).
fn host_only(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

impl Settings {
    /// Whether the registry at `host` (`HOST[:PORT]`) is to be spoken to over HTTP.
    pub fn is_insecure(&self, host: &str) -> bool {
        let host_l = host.to_ascii_lowercase();
        let mut nets = Vec::new();
        for e in &self.insecure_registries {
            match parse_net(e) {
                Some(n) => nets.push(n),
                None => {
                    if e.to_ascii_lowercase() == host_l {
                        return true;
                    }
                }
            }
        }
        if nets.is_empty() {
            return false;
        }
        // A network matches the registry's addresses (resolved, as Docker does).
        let name = host_only(host);
        let addrs: Vec<IpAddr> = match name.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (name, 0u16)
                .to_socket_addrs()
                .map(|a| a.map(|s| s.ip()).collect())
                .unwrap_or_default(),
        };
        addrs.iter().any(|ip| nets.iter().any(|n| in_net(*ip, *n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Settings {
        Settings {
            insecure_registries: v.iter().map(|x| x.to_string()).collect(),
            userns_remap: None,
        }
    }

    #[test]
    fn hosts_match_exactly_and_networks_by_address() {
        let c = s(&["Registry.LAN:5000", "10.0.0.0/8", "fd00::/8"]);
        assert!(c.is_insecure("registry.lan:5000"));
        assert!(!c.is_insecure("registry.lan:5001"));
        assert!(!c.is_insecure("registry.lan"));
        assert!(c.is_insecure("10.77.0.1:5002"));
        assert!(c.is_insecure("10.1.2.3"));
        assert!(!c.is_insecure("11.0.0.1:5000"));
        assert!(c.is_insecure("[fd12::1]:5000"));
        assert!(!c.is_insecure("[fe80::1]:5000"));
        assert!(!s(&[]).is_insecure("10.0.0.1:5000"));
        assert!(s(&["0.0.0.0/0"]).is_insecure("192.0.2.1:1"));
    }

    #[test]
    fn entries_are_checked() {
        for ok in ["r.lan", "r.lan:5000", "10.0.0.0/8", "[::1]:5000", "::/0"] {
            assert!(valid_entry(ok), "{ok}");
        }
        for bad in ["", "http://r.lan", "10.0.0.0/33", "r.lan/8", "a b"] {
            assert!(!valid_entry(bad), "{bad}");
        }
    }

    #[test]
    fn a_missing_file_is_the_defaults_and_a_typo_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("daemon.json");
        let load = || load_from(p.clone());
        assert!(load().unwrap().insecure_registries.is_empty());
        std::fs::write(&p, r#"{"insecure-registry": ["x"]}"#).unwrap();
        let e = load().unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
        std::fs::write(&p, r#"{"insecure-registries": ["http://x"]}"#).unwrap();
        assert!(load().unwrap_err().to_string().contains("neither"));
        std::fs::write(&p, r#"{"insecure-registries": ["x:1", "10.0.0.0/8"]}"#).unwrap();
        assert_eq!(load().unwrap().insecure_registries.len(), 2);
    }
}
