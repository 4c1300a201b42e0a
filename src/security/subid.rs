//! Subordinate ids (/etc/subuid, /etc/subgid) for `--userns remap`: the host range a
//! remapped container's ids 0..65535 become, as Docker's `userns-remap` takes them.

use crate::spec::IdMap;
use std::path::Path;

/// Ids a remapped container gets (its uids and gids 0..65535).
pub const RANGE: u32 = 65536;

/// The user whose ranges `--userns remap` uses when the settings name none (Docker's
/// `"default"` means its `dockremap` user; twinbox's is `twinbox`).
pub const DEFAULT_USER: &str = "twinbox";

/// The first range of at least [`RANGE`] ids that a `name:start:count` file gives
/// `user` (by name or by numeric id).
pub fn find(text: &str, user: &str, uid: Option<u32>) -> Option<u32> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        let me = who == user || uid.is_some_and(|u| who == u.to_string());
        let (start, count): (u32, u32) = (start.parse().ok()?, count.parse().ok()?);
        (me && count >= RANGE && start > 0 && start.checked_add(RANGE).is_some()).then_some(start)
    })
}

/// The numeric uid and primary gid of `user` from /etc/passwd.
fn passwd_ids(user: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// The mapping for `spec` (`USER` or `USER:GROUP`, or `default`).
pub fn lookup(spec: &str) -> Result<IdMap, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, g),
        None if spec == "default" => (DEFAULT_USER, DEFAULT_USER),
        None => (spec, spec),
    };
    let ids = passwd_ids(user);
    let read = |p: &str| std::fs::read_to_string(Path::new(p)).unwrap_or_default();
    let uid = find(&read("/etc/subuid"), user, ids.map(|i| i.0));
    let gid = find(&read("/etc/subgid"), group, ids.map(|i| i.1));
    match (uid, gid) {
        (Some(uid), Some(gid)) => Ok(IdMap {
            uid,
            gid,
            size: RANGE,
        }),
        _ => Err(format!(
            "--userns remap needs {RANGE} subordinate ids for {user:?} in /etc/subuid and /etc/subgid \
             (e.g. `useradd --system {user}; usermod --add-subuids 200000-265535 --add-subgids 200000-265535 {user}`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_by_name_or_id_and_big_enough() {
        let t = "alice:100000:65536\ntwinbox:200000:1000\ntwinbox:300000:65536\n998:400000:70000\n";
        assert_eq!(find(t, "twinbox", None), Some(300000));
        assert_eq!(find(t, "alice", None), Some(100000));
        assert_eq!(find(t, "svc", Some(998)), Some(400000));
        assert_eq!(find(t, "bob", None), None);
        assert_eq!(find("x:0:65536\ny:4294967295:65536", "x", None), None);
        assert_eq!(find("y:4294967295:65536", "y", None), None);
    }
}
