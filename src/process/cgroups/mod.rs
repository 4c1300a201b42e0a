//! cgroups: one manager trait, a v1 and a v2 backend, chosen by probing the host.
//!
//! A container gets `twinbox/<id>` in each hierarchy; limits are written before its
//! first process joins, the freezer implements pause, and the memory controller's
//! OOM counter tells whether the workload was OOM-killed.

pub mod devices;

mod v1;
mod v2;

use crate::spec::Resources;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("cgroup file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no usable cgroup hierarchy found under /sys/fs/cgroup")]
    NoHierarchy,
    #[error("the freezer did not settle within 5 s")]
    FreezeTimeout,
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io_err(path))
}

pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

/// Figures read from the container's cgroup.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CgroupStats {
    pub memory_bytes: u64,
    /// Peak memory use since the cgroup was created (0 if the kernel does not say).
    pub memory_peak: u64,
    pub memory_limit: Option<u64>,
    pub cpu_usage_ns: u64,
    pub pids: u64,
}

/// What twinbox does with a container's cgroup.
pub trait CgroupManager: Send + Sync {
    /// Create the cgroup and write the limits.
    /// Create the group with `res`'s limits; `all_devices` (privileged) lifts the
    /// device rules.
    fn create(&self, res: &Resources, all_devices: bool) -> Result<(), CgroupError>;
    /// Move a process in.
    fn add(&self, pid: i32) -> Result<(), CgroupError>;
    fn freeze(&self) -> Result<(), CgroupError>;
    fn thaw(&self) -> Result<(), CgroupError>;
    /// Pids of every process in the cgroup.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    /// SIGKILL every process in the cgroup.
    fn kill_all(&self) -> Result<(), CgroupError>;
    /// Has the kernel's OOM killer killed a process in this cgroup?
    fn oom_killed(&self) -> bool;
    fn stats(&self) -> Result<CgroupStats, CgroupError>;
    /// Remove the cgroup (after `kill_all`). Missing is fine.
    fn destroy(&self) -> Result<(), CgroupError>;
    /// Every directory this cgroup uses (for checks that nothing is left behind).
    fn paths(&self) -> Vec<PathBuf>;
    /// "v1" or "v2".
    fn version(&self) -> &'static str;
}

/// The cgroup layout of this host.
#[derive(Debug, Clone, PartialEq)]
pub enum Layout {
    /// Pure cgroup v2 mounted at the given path.
    V2(PathBuf),
    /// v1 controllers: name -> mount point (a v2 hierarchy beside them is ignored).
    V1(Vec<(String, PathBuf)>),
}

/// Parse /proc/self/mounts to find the cgroup layout.
pub fn probe_layout(mounts: &str) -> Option<Layout> {
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        match f[2] {
            "cgroup2" => {
                let p = PathBuf::from(f[1]);
                if p.join("cgroup.controllers").exists() || v2.is_none() {
                    v2 = Some(p);
                }
            }
            "cgroup" => {
                for opt in f[3].split(',') {
                    if [
                        "memory", "cpu", "cpuacct", "pids", "freezer", "devices", "cpuset",
                    ]
                    .contains(&opt)
                    {
                        v1.push((opt.to_string(), PathBuf::from(f[1])));
                    }
                }
            }
            _ => {}
        }
    }
    if !v1.is_empty() {
        return Some(Layout::V1(v1));
    }
    v2.map(Layout::V2)
}

/// The manager for container `id` on this host.
pub fn manager(id: &str) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let mounts = read(Path::new("/proc/self/mounts"))?;
    match probe_layout(&mounts).ok_or(CgroupError::NoHierarchy)? {
        Layout::V2(root) => Ok(Box::new(v2::V2::new(&root, id))),
        Layout::V1(ctrls) => Ok(Box::new(v1::V1::new(&ctrls, id))),
    }
}

/// Poll `check` every 10 ms for up to 5 s.
pub(crate) fn settle(
    mut check: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<(), CgroupError> {
    for _ in 0..500 {
        if check()? {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(CgroupError::FreezeTimeout)
}

pub(crate) fn parse_pids(s: &str) -> Vec<i32> {
    s.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Value of `key` in a flat-keyed cgroup file ("key value" lines).
pub(crate) fn keyed(s: &str, key: &str) -> Option<u64> {
    s.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

/// Remove a cgroup directory, retrying while the kernel is still tearing down its tasks.
pub(crate) fn rmdir_retry(dir: &Path) -> Result<(), CgroupError> {
    for i in 0..200 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if i == 199 => return Err(io_err(dir)(e)),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_hybrid_as_v1() {
        let m = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
                 cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
                 cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        match probe_layout(m).unwrap() {
            Layout::V1(c) => {
                assert!(c.contains(&("memory".into(), "/sys/fs/cgroup/memory".into())));
                assert!(c.contains(&("cpu".into(), "/sys/fs/cgroup/cpu".into())));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn probes_comounted_v1() {
        let m = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n";
        let Layout::V1(c) = probe_layout(m).unwrap() else {
            panic!()
        };
        assert_eq!(c.len(), 2);
        assert!(c
            .iter()
            .all(|(_, p)| p == Path::new("/sys/fs/cgroup/cpu,cpuacct")));
    }

    #[test]
    fn probes_v2() {
        let m = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n";
        assert_eq!(
            probe_layout(m).unwrap(),
            Layout::V2("/sys/fs/cgroup".into())
        );
        assert!(probe_layout("proc /proc proc rw 0 0\n").is_none());
    }

    #[test]
    fn keyed_files() {
        let s = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n";
        assert_eq!(keyed(s, "oom_kill"), Some(1));
        assert_eq!(keyed(s, "oom"), Some(1));
        assert_eq!(keyed(s, "nope"), None);
        assert_eq!(parse_pids("1\n22\n\n"), vec![1, 22]);
    }
}
