//! Resolving `-u user[:group]` against the image's /etc/passwd and /etc/group.

use crate::spec::User;
use std::path::PathBuf;

/// (name, gid, member names) of one /etc/group line.
type GroupEntry = (String, u32, Vec<String>);

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

fn parse_passwd(s: &str) -> Vec<PasswdEntry> {
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4).then(|| {
                Some(PasswdEntry {
                    name: f[0].to_string(),
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                })
            })?
        })
        .collect()
}

/// (name, gid, members)
fn parse_group(s: &str) -> Vec<GroupEntry> {
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            Some((f[0].to_string(), f[2].parse().ok()?, members))
        })
        .collect()
}

/// Read a file from the topmost layer that has it.
fn read_from_layers(layers: &[PathBuf], rel: &str) -> String {
    layers
        .iter()
        .rev()
        .find_map(|l| std::fs::read_to_string(l.join(rel)).ok())
        .unwrap_or_default()
}

/// Resolve a Docker user spec (`name`, `uid`, `uid:gid`, `name:group`) to ids.
pub fn resolve(spec: &str, layers: &[PathBuf]) -> Result<User, String> {
    let passwd = parse_passwd(&read_from_layers(layers, "etc/passwd"));
    let groups = parse_group(&read_from_layers(layers, "etc/group"));
    resolve_with(spec, &passwd, &groups)
}

fn resolve_with(spec: &str, passwd: &[PasswdEntry], groups: &[GroupEntry]) -> Result<User, String> {
    if spec.is_empty() {
        return Ok(User::default());
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid, name) = if let Ok(n) = u.parse::<u32>() {
        match passwd.iter().find(|p| p.uid == n) {
            Some(p) => (n, p.gid, Some(p.name.clone())),
            None => (n, 0, None),
        }
    } else {
        let p = passwd.iter().find(|p| p.name == u).ok_or_else(|| {
            format!("unable to find user {u}: no matching entries in passwd file")
        })?;
        (p.uid, p.gid, Some(p.name.clone()))
    };
    if let Some(g) = g {
        gid = if let Ok(n) = g.parse::<u32>() {
            n
        } else {
            groups
                .iter()
                .find(|(n, _, _)| n == g)
                .map(|(_, id, _)| *id)
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?
        };
    }
    let additional_gids = match &name {
        Some(n) => groups
            .iter()
            .filter(|(_, id, members)| members.contains(n) && *id != gid)
            .map(|(_, id, _)| *id)
            .collect(),
        None => vec![],
    };
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (Vec<PasswdEntry>, Vec<GroupEntry>) {
        (
            parse_passwd("root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n"),
            parse_group("root:x:0:\nweb:x:1000:\naudio:x:29:web,other\n"),
        )
    }

    #[test]
    fn names_numbers_and_groups() {
        let (p, g) = db();
        let u = resolve_with("web", &p, &g).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (1000, 1000, vec![29])
        );
        let u = resolve_with("1234:5", &p, &g).unwrap();
        assert_eq!((u.uid, u.gid), (1234, 5));
        let u = resolve_with("0", &p, &g).unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        let u = resolve_with("web:audio", &p, &g).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 29));
        assert!(resolve_with("nobody", &p, &g)
            .unwrap_err()
            .contains("no matching entries in passwd"));
        assert!(resolve_with("web:nogroup", &p, &g).is_err());
    }
}
