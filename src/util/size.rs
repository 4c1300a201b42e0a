//! Human sizes: parse `--memory 32m`, print `1.2MB`.

/// Parse a Docker-style size: a number with an optional b/k/m/g suffix (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|r| !r.is_empty()).unwrap_or(&t);
    let (num, mult): (&str, u64) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let bad = || format!("invalid size {s:?}: use a number with an optional unit, like 64m or 1g");
    let v: f64 = num.parse().map_err(|_| bad())?;
    if !v.is_finite() || v <= 0.0 {
        return Err(bad());
    }
    let bytes = v * mult as f64;
    if bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Decimal human size the way `docker images` prints it.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + UNITS[i]
    }
}

/// Binary human size (MiB) for memory figures.
pub fn human_binary(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("32m").unwrap(), 32 << 20);
        assert_eq!(parse_size("32MB").unwrap(), 32 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1m").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn prints_like_docker() {
        assert_eq!(human(999), "999B");
        assert_eq!(human(2_170_000), "2.17MB");
        assert_eq!(human_binary(3 << 20), "3.0MiB");
    }
}
