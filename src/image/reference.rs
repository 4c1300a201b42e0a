//! Image references parsed like Docker's: `busybox` is `docker.io/library/busybox:latest`.

use std::fmt;

const DEFAULT_REGISTRY: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// A path component of a repository name, Docker's grammar: lowercase letters and
/// digits, separated by one '.', one '_', "__" or any run of '-' (so never `..`, and
/// never starting or ending with a separator).
fn valid_component(p: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b: Vec<char> = p.chars().collect();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep: String = b[start..i].iter().collect();
        if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-')) {
            return false;
        }
    }
    true
}

/// A registry host: DNS labels (or `localhost`), an optional `:port`.
fn valid_registry(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label)
        && port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()))
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, String> {
        let shown: String = if s.chars().count() > 80 {
            s.chars().take(60).chain("…".chars()).collect()
        } else {
            s.to_string()
        };
        let bad = |why: &str| format!("invalid image reference {shown:?}: {why}");
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("digest must be sha256:<64 hex digits>"))?;
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(bad("digest must be sha256:<64 hex digits>"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            // Docker's grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
            let ok = t.len() <= 128
                && t.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(bad("invalid tag"));
            }
        }
        if name.len() > 255 {
            return Err(bad("the name is longer than 255 characters"));
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let registry = if parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
        {
            parts.remove(0).to_string()
        } else {
            DEFAULT_REGISTRY.to_string()
        };
        if !valid_registry(&registry) {
            return Err(bad("invalid registry host"));
        }
        if parts.iter().any(|p| !valid_component(p)) {
            return Err(bad(
                "repository names use lowercase letters, digits, '.', '_', '-' and '/'",
            ));
        }
        let mut repository = parts.join("/");
        if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The short name Docker prints: `busybox`, `myreg:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// `name:tag` as the tag index keys it (None for digest-only references).
    pub fn tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{}", self.familiar_name(), t))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.familiar_name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_defaults() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.tagged().unwrap(), "busybox:latest");
    }

    #[test]
    fn registry_port_and_tag() {
        let r = Reference::parse("localhost:5000/team/app:v1").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.familiar_name(), "localhost:5000/team/app");
    }

    #[test]
    fn digest_only() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Reference::parse("").is_err());
        assert!(Reference::parse("BusyBox").is_err());
        assert!(Reference::parse("busybox:").is_err());
        assert!(Reference::parse("busybox@sha256:12").is_err());
        assert!(Reference::parse("a//b").is_err());
        // Names that could climb out of a path, or are absurdly long.
        assert!(Reference::parse("../../evil").is_err());
        assert!(Reference::parse("a/../b").is_err());
        assert!(Reference::parse(".hidden").is_err());
        assert!(Reference::parse("a-").is_err());
        assert!(Reference::parse("busybox:.x").is_err());
        assert!(Reference::parse(&"a".repeat(5000)).is_err());
        assert!(Reference::parse(&format!("busybox:{}", "t".repeat(129))).is_err());
        assert!(Reference::parse("bad_host:x/y").is_err());
        assert!(Reference::parse("reg.example:99x/app").is_err());
        // Docker's separators are fine.
        for ok in ["a_b", "a__b", "a---b", "a.b", "my-app/v1.2_x:1.0-rc_1"] {
            assert!(Reference::parse(ok).is_ok(), "{ok}");
        }
    }
}
