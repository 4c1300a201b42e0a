//! Subordinate ids (/etc/subuid, /etc/subgid) for `--userns remap`: the host range a
//! remapped container's ids 0..65535 become, as Docker's `userns-remap` takes them.

use crate::spec::IdMap;
use std::path::Path;

/// Ids a remapped container gets (its uids and gids 0..65535).
pub const RANGE: u32 = 65536;

/// The user whose ranges `--userns remap` uses when the settings name none (Docker's
/// `"default"` means its `dockremap` user; twinbox's is `twinbox`).
pub const DEFAULT_USER: &str = "twinbox";

/// One `name:start:count` line.
struct Entry<'a> {
    who: &'a str,
    start: u64,
    count: u64,
}

fn entries(text: &str) -> Vec<Entry<'_>> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            Some(Entry {
                who: f.next()?,
                start: f.next()?.parse().ok()?,
                count: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// The first range of at least [`RANGE`] ids that a `name:start:count` file gives
/// `user` (by name or by numeric uid). A range that overlaps another user's, or that
/// holds an id of /etc/passwd, is refused: that user (or account) could otherwise act
/// as the remapped containers' root (signal them, own their files).
pub fn find(text: &str, user: &str, uid: Option<u32>, passwd_ids: &[u32]) -> Result<u32, String> {
    let all = entries(text);
    let mine = |e: &Entry| e.who == user || uid.is_some_and(|u| e.who == u.to_string());
    let e = all
        .iter()
        .find(|e| {
            mine(e)
                && e.count >= RANGE as u64
                && e.start > 0
                && e.start + RANGE as u64 <= u32::MAX as u64
        })
        .ok_or_else(|| format!("no range of {RANGE} ids for {user:?}"))?;
    let (lo, hi) = (e.start, e.start + RANGE as u64);
    if let Some(o) = all
        .iter()
        .find(|o| !mine(o) && o.start < hi && lo < o.start + o.count)
    {
        return Err(format!(
            "the range {lo}-{} of {user:?} overlaps {:?}'s",
            hi - 1,
            o.who
        ));
    }
    if let Some(id) = passwd_ids.iter().find(|i| (lo..hi).contains(&(**i as u64))) {
        return Err(format!(
            "the range {lo}-{} of {user:?} holds the account id {id}",
            hi - 1
        ));
    }
    Ok(e.start as u32)
}

/// The uid of `user` and every uid and gid /etc/passwd and /etc/group hold.
fn accounts(user: &str) -> (Option<u32>, Vec<u32>) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let mut uid = None;
    let mut ids = Vec::new();
    for l in passwd.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() > 3 {
            let u = f[2].parse().ok();
            if f[0] == user {
                uid = u;
            }
            ids.extend(u);
            ids.extend(f[3].parse::<u32>().ok());
        }
    }
    for l in group.lines() {
        ids.extend(l.split(':').nth(2).and_then(|g| g.parse::<u32>().ok()));
    }
    // nobody/nogroup sit at the top of the 16-bit range, never in a sane subordinate one
    ids.retain(|i| *i != 65534);
    (uid, ids)
}

/// The mapping for `spec` (`USER` or `USER:GROUP`, or `default`).
pub fn lookup(spec: &str) -> Result<IdMap, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, g),
        None if spec == "default" => (DEFAULT_USER, DEFAULT_USER),
        None => (spec, spec),
    };
    let (uid, ids) = accounts(user);
    let read = |p: &str| std::fs::read_to_string(Path::new(p)).unwrap_or_default();
    let how = || {
        format!(
            "(e.g. `useradd --system {user}; usermod --add-subuids N-M --add-subgids N-M {user}` with a free range, as scripts/setup.sh does)"
        )
    };
    // Both files are keyed by user name or uid (not gid), as Docker reads them.
    let uid_start = find(&read("/etc/subuid"), user, uid, &ids)
        .map_err(|e| format!("--userns remap: /etc/subuid: {e} {}", how()))?;
    let gid_start = find(
        &read("/etc/subgid"),
        group,
        uid.filter(|_| group == user),
        &ids,
    )
    .map_err(|e| format!("--userns remap: /etc/subgid: {e} {}", how()))?;
    Ok(IdMap {
        uid: uid_start,
        gid: gid_start,
        size: RANGE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_by_name_or_id_big_enough_and_alone() {
        let t = "alice:100000:65536\ntwinbox:300000:1000\ntwinbox:400000:65536\n998:500000:70000\n";
        assert_eq!(find(t, "twinbox", None, &[]), Ok(400000));
        assert_eq!(find(t, "alice", None, &[]), Ok(100000));
        assert_eq!(find(t, "svc", Some(998), &[]), Ok(500000));
        assert!(find(t, "bob", None, &[]).is_err());
        assert!(find("x:0:65536", "x", None, &[]).is_err());
        assert!(find("y:4294967295:65536", "y", None, &[]).is_err());
        // shadow-utils' next range for a second user would overlap a fixed 200000 one
        let clash = "alice:100000:65536\nbob:165536:65536\ntwinbox:200000:65536\n";
        assert!(find(clash, "twinbox", None, &[])
            .unwrap_err()
            .contains("bob"));
        assert!(find(t, "alice", None, &[100500])
            .unwrap_err()
            .contains("100500"));
    }
}
