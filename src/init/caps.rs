//! Linux capabilities: Docker's default set, the bounding set, and capset(2).

use std::io;

/// Docker's default capabilities for a container's root user.
pub const DOCKER_DEFAULT: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// The default set as a 64-bit mask.
pub fn default_mask() -> u64 {
    DOCKER_DEFAULT
        .iter()
        .fold(0u64, |m, (c, _)| m | (1u64 << c))
}

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Drop every capability not in `keep` from the bounding set.
pub fn drop_bounding(keep: u64, last: u32) -> io::Result<()> {
    for cap in 0..=last {
        if keep & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// Set the effective and permitted sets of the calling thread to `mask`, and empty the
/// inheritable set (as Docker does since 23.0: nothing passes through exec into a
/// program with file capabilities).
pub fn set_all(mask: u64) -> io::Result<()> {
    let hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let lo = mask as u32;
    let hi = (mask >> 32) as u32;
    let data = [
        CapData {
            effective: lo,
            permitted: lo,
            inheritable: 0,
        },
        CapData {
            effective: hi,
            permitted: hi,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads one header and two data structs, both alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Every capability Linux defines, by number.
pub const ALL: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Names of the capabilities in `mask` (for inspect and --explain).
pub fn names(mask: u64) -> Vec<&'static str> {
    ALL.iter()
        .enumerate()
        .filter(|(c, _)| mask & (1u64 << c) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// `net_admin`, `NET_ADMIN`, `CAP_NET_ADMIN` -> `CAP_NET_ADMIN`; `all` -> `ALL`.
pub fn canonical(name: &str) -> Result<String, String> {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if ALL.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(format!("unknown capability {name:?}"))
    }
}

/// The calling process's bounding set: no container can get more (twinbox may itself
/// run confined, as inside another container).
pub fn own_bounding() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// Every capability the kernel knows, as a mask.
pub fn all_mask(last: u32) -> u64 {
    (0..=last.min(63)).fold(0u64, |m, c| m | (1u64 << c))
}

/// Docker's rules for `--privileged`, `--cap-add` and `--cap-drop` (canonical names):
/// privileged gets everything; otherwise `--cap-add ALL` starts from everything and
/// `--cap-drop ALL` from nothing, then the named ones are added and dropped.
pub fn resolve(privileged: bool, add: &[String], drop: &[String], last: u32) -> u64 {
    let all = all_mask(last);
    if privileged {
        return all;
    }
    let bit = |n: &String| {
        ALL.iter()
            .position(|a| a == n)
            .map(|i| 1u64 << i)
            .unwrap_or(0)
    };
    let has_all = |v: &[String]| v.iter().any(|n| n == "ALL");
    let mut m = if has_all(add) {
        all
    } else if has_all(drop) {
        0
    } else {
        default_mask()
    };
    if !has_all(drop) {
        for n in drop {
            m &= !bit(n);
        }
    }
    for n in add {
        m |= bit(n);
    }
    if has_all(add) {
        for n in drop {
            m &= !bit(n);
        }
    }
    m & all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_and_drop_follow_docker() {
        let v = |xs: &[&str]| xs.iter().map(|x| canonical(x).unwrap()).collect::<Vec<_>>();
        assert_eq!(resolve(false, &[], &v(&["all"]), 40), 0);
        assert_eq!(
            resolve(false, &v(&["net_admin"]), &v(&["ALL"]), 40),
            1 << 12
        );
        assert_eq!(resolve(true, &[], &v(&["all"]), 40), all_mask(40));
        assert_eq!(
            resolve(false, &v(&["ALL"]), &v(&["SYS_ADMIN"]), 40),
            all_mask(40) & !(1 << 21)
        );
        let m = resolve(false, &v(&["SYS_PTRACE"]), &v(&["CAP_NET_RAW"]), 40);
        assert_eq!(m, (default_mask() | 1 << 19) & !(1 << 13));
        assert!(canonical("bogus").is_err());
        assert_eq!(names(1 << 21), vec!["CAP_SYS_ADMIN"]);
    }

    #[test]
    fn default_set_is_dockers() {
        let m = default_mask();
        assert_eq!(m.count_ones(), 14);
        assert!(m & (1 << 21) == 0, "CAP_SYS_ADMIN must not be granted");
        assert!(names(m).contains(&"CAP_NET_BIND_SERVICE"));
    }
}
