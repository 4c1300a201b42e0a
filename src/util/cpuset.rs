//! CPU lists as the kernel writes them (`0-3,8,10-11`): `--cpuset-cpus`, cgroup
//! cpuset files, /sys/devices/system/cpu/online, and sched_setaffinity.

use std::collections::BTreeSet;

/// Parse a CPU list; `what` names it in errors.
pub fn parse(s: &str) -> Result<BTreeSet<usize>, String> {
    let bad = || format!("invalid CPU list {s:?}: use numbers and ranges like 0-2,4");
    let mut set = BTreeSet::new();
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        if a > b || b >= 8192 {
            return Err(bad());
        }
        set.extend(a..=b);
    }
    Ok(set)
}

/// The kernel's compact form: ranges joined by commas.
pub fn format(set: &BTreeSet<usize>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = set.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end = it.next().expect("peeked");
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// The CPUs this process may run on (its affinity mask).
pub fn allowed() -> BTreeSet<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the pointer and size describe `set`.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    let mut out = BTreeSet::new();
    if r == 0 {
        for cpu in 0..libc::CPU_SETSIZE as usize {
            // SAFETY: cpu < CPU_SETSIZE, the set's capacity.
            if unsafe { libc::CPU_ISSET(cpu, &set) } {
                out.insert(cpu);
            }
        }
    }
    out
}

/// Restrict the calling thread (and the threads it starts later) to `cpus`.
pub fn pin_current_thread(cpus: &BTreeSet<usize>) -> std::io::Result<()> {
    // SAFETY: as in `allowed`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c < libc::CPU_SETSIZE as usize {
            // SAFETY: c < CPU_SETSIZE.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: pid 0 is this thread; the pointer and size describe `set`.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `--cpuset-cpus`: parsed, checked against the CPUs this host lets us use, and
/// returned in canonical form.
pub fn validate(requested: &str) -> Result<String, String> {
    let want = parse(requested).map_err(|e| format!("invalid --cpuset-cpus: {e}"))?;
    let have = allowed();
    if !want.is_subset(&have) {
        let missing: BTreeSet<usize> = want.difference(&have).copied().collect();
        return Err(format!(
            "invalid --cpuset-cpus {requested}: CPUs {} are not available (this host has {})",
            format(&missing),
            format(&have)
        ));
    }
    Ok(format(&want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip() {
        for (i, o) in [
            ("0", "0"),
            ("0-3", "0-3"),
            ("3,1,2", "1-3"),
            ("0-1,4,6-7", "0-1,4,6-7"),
            (" 2 , 0 ", "0,2"),
        ] {
            assert_eq!(format(&parse(i).unwrap()), o, "{i}");
        }
        for bad in ["", "a", "1-", "-1", "3-1", "1,,2", "0x1", "99999"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_available_cpus_validate() {
        let have = allowed();
        assert!(!have.is_empty());
        let first = *have.iter().next().unwrap();
        assert_eq!(validate(&first.to_string()).unwrap(), first.to_string());
        let e = validate("8000").unwrap_err();
        assert!(e.contains("not available"), "{e}");
        assert!(validate("x").unwrap_err().contains("invalid --cpuset-cpus"));
    }
}
