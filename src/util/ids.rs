//! Container ids and names, Docker style.

use rand::seq::SliceRandom;
use rand::RngCore;

/// A fresh 64-hex-digit id.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

const LEFT: &[&str] = &[
    "admiring", "brave", "calm", "clever", "eager", "focused", "gentle", "happy", "jolly", "keen",
    "loving", "nifty", "quirky", "serene", "sharp", "tender", "vibrant", "zealous",
];
const RIGHT: &[&str] = &[
    "babbage", "curie", "dijkstra", "euler", "fermi", "gauss", "hopper", "kepler", "lamport",
    "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "torvalds", "turing",
    "wozniak",
];

/// A random `adjective_scientist` name.
pub fn random_name() -> String {
    let mut rng = rand::thread_rng();
    format!(
        "{}_{}",
        LEFT.choose(&mut rng).unwrap_or(&"calm"),
        RIGHT.choose(&mut rng).unwrap_or(&"turing")
    )
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex64() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_id());
    }

    #[test]
    fn names() {
        assert!(valid_name("web-1"));
        assert!(valid_name(&random_name()));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a"));
        assert!(!valid_name("a/b"));
    }
}
