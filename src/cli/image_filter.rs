//! Which rows `images` shows: `images [REPOSITORY[:TAG]]` and `--filter`
//! (`dangling=true|false`, `reference=PATTERN`), as Docker selects them.

use crate::image::Reference;

/// A parsed selection; every part must match.
#[derive(Debug, Default)]
pub struct ImageFilter {
    /// REPOSITORY[:TAG], normalized; whether a tag was given.
    reference: Option<(Reference, bool)>,
    dangling: Option<bool>,
    /// Glob patterns over the name as shown (`repo` or `repo:tag`).
    patterns: Vec<String>,
}

impl ImageFilter {
    pub fn new(reference: Option<&str>, filters: &[String]) -> Result<ImageFilter, String> {
        let mut f = ImageFilter {
            reference: reference
                .map(|r| {
                    let tagged = r.rsplit('/').next().is_some_and(|last| last.contains(':'));
                    Reference::parse(r).map(|p| (p, tagged))
                })
                .transpose()?,
            ..Default::default()
        };
        for spec in filters {
            let (k, v) = spec
                .split_once('=')
                .ok_or_else(|| format!("bad filter {spec:?}: use KEY=VALUE"))?;
            match k {
                "dangling" => {
                    f.dangling = Some(match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(format!("bad filter {spec:?}: dangling is true or false")),
                    })
                }
                "reference" => f.patterns.push(v.to_string()),
                _ => {
                    return Err(format!(
                        "unknown filter {k:?}: twinbox images knows dangling and reference"
                    ))
                }
            }
        }
        Ok(f)
    }

    /// Whether a row — an image under one name, or `None` for an untagged image —
    /// is shown.
    pub fn shows(&self, name: Option<&str>) -> bool {
        if let Some(d) = self.dangling {
            if d != name.is_none() {
                return false;
            }
        }
        if let Some((want, tagged)) = &self.reference {
            let Some(have) = name.and_then(|n| Reference::parse(n).ok()) else {
                return false;
            };
            if have.registry != want.registry || have.repository != want.repository {
                return false;
            }
            if *tagged && have.tag != want.tag {
                return false;
            }
        }
        if !self.patterns.is_empty() {
            let Some(n) = name else { return false };
            let repo = n.rsplit_once(':').map(|(r, _)| r).unwrap_or(n);
            if !self
                .patterns
                .iter()
                .any(|p| glob(p, if p.contains(':') { n } else { repo }))
            {
                return false;
            }
        }
        true
    }
}

/// `*` matches any run of characters except `/`, `?` any one character.
fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != '/')
                .any(|i| go(rest, &s[i..])),
            Some(('?', rest)) => !s.is_empty() && s[0] != '/' && go(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(r: Option<&str>, fl: &[&str]) -> ImageFilter {
        ImageFilter::new(r, &fl.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn a_repository_selects_its_tags() {
        let by_repo = f(Some("busybox"), &[]);
        assert!(by_repo.shows(Some("busybox:latest")));
        assert!(by_repo.shows(Some("docker.io/library/busybox:1.36")));
        assert!(!by_repo.shows(Some("example.org/busybox:latest")));
        assert!(!by_repo.shows(None));
        let by_tag = f(Some("busybox:1.36"), &[]);
        assert!(by_tag.shows(Some("busybox:1.36")));
        assert!(!by_tag.shows(Some("busybox:latest")));
    }

    #[test]
    fn dangling_and_reference_filters() {
        assert!(f(None, &["dangling=true"]).shows(None));
        assert!(!f(None, &["dangling=true"]).shows(Some("a:b")));
        assert!(f(None, &["dangling=false"]).shows(Some("a:b")));
        assert!(!f(None, &["dangling=false"]).shows(None));
        let r = f(None, &["reference=busy*"]);
        assert!(r.shows(Some("busybox:latest")));
        assert!(!r.shows(Some("example.org/busybox:latest")), "* stops at /");
        assert!(f(None, &["reference=*/me/*:v?"]).shows(Some("example.org/me/bb:v1")));
        assert!(!f(None, &["reference=*/me/*:v?"]).shows(Some("example.org/me/bb:v10")));
        assert!(f(None, &["reference=a*", "reference=b*"]).shows(Some("bb:1")));
        assert!(f(None, &[]).shows(None));
    }

    #[test]
    fn bad_filters_are_refused() {
        for bad in ["dangling", "dangling=maybe", "label=x=y", "before=busybox"] {
            assert!(ImageFilter::new(None, &[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(ImageFilter::new(Some("Bad Name"), &[]).is_err());
    }
}
