//! cgroup v1: one directory per controller hierarchy.

use super::*;
use crate::spec::Resources;

pub struct V1 {
    /// controller -> this container's directory in that controller's hierarchy
    dirs: Vec<(String, PathBuf)>,
}

impl V1 {
    pub fn new(ctrls: &[(String, PathBuf)], id: &str) -> V1 {
        let wanted = [
            "memory", "cpu", "cpuacct", "pids", "freezer", "devices", "cpuset",
        ];
        let mut dirs: Vec<(String, PathBuf)> = Vec::new();
        for (name, mnt) in ctrls {
            if wanted.contains(&name.as_str()) {
                dirs.push((name.clone(), mnt.join("twinbox").join(id)));
            }
        }
        V1 { dirs }
    }

    fn dir(&self, ctrl: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(n, _)| n == ctrl)
            .map(|(_, p)| p.as_path())
    }

    /// Unique directories (co-mounted controllers share one).
    fn unique_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.dirs.iter().map(|(_, p)| p.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Copy cpuset.cpus and cpuset.mems from the parent group where they are empty.
fn inherit_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if read(&dir.join(f))?.trim().is_empty() {
            write(&dir.join(f), read(&parent.join(f))?.trim())?;
        }
    }
    Ok(())
}

impl CgroupManager for V1 {
    fn create(&self, res: &Resources, all_devices: bool) -> Result<(), CgroupError> {
        for d in self.unique_dirs() {
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        if let Some(d) = self.dir("devices") {
            if all_devices {
                write(&d.join("devices.allow"), "a")?;
            } else {
                write(&d.join("devices.deny"), "a")?;
                for rule in super::devices::DEFAULT {
                    write(&d.join("devices.allow"), &rule.v1_line())?;
                }
            }
        }
        if let Some(d) = self.dir("cpuset") {
            // A new v1 cpuset group starts with no CPUs and no memory nodes (unless the
            // parent clones them), and no task may join it so: fill the twinbox group
            // and this one from their parents, then narrow to what was asked.
            if let Some(parent) = d.parent() {
                inherit_cpuset(parent)?;
            }
            inherit_cpuset(d)?;
            if let Some(cpus) = &res.cpuset_cpus {
                write(&d.join("cpuset.cpus"), cpus)?;
            }
        }
        if let (Some(mem), Some(d)) = (res.memory, self.dir("memory")) {
            write(&d.join("memory.limit_in_bytes"), &mem.to_string())?;
            let sw = d.join("memory.memsw.limit_in_bytes");
            if sw.exists() {
                write(&sw, &mem.to_string())?;
            }
            let swappiness = d.join("memory.swappiness");
            if swappiness.exists() {
                let _ = write(&swappiness, "0");
            }
        }
        if let (Some(cpus), Some(d)) = (res.cpus, self.dir("cpu")) {
            let period = 100_000u64;
            write(&d.join("cpu.cfs_period_us"), &period.to_string())?;
            let quota = ((cpus * period as f64) as u64).max(1000);
            write(&d.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        if let (Some(pids), Some(d)) = (res.pids_limit, self.dir("pids")) {
            let v = if pids <= 0 {
                "max".to_string()
            } else {
                pids.to_string()
            };
            write(&d.join("pids.max"), &v)?;
        }
        Ok(())
    }

    fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for d in self.unique_dirs() {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let Some(d) = self.dir("freezer") else {
            return Err(CgroupError::NoHierarchy);
        };
        write(&d.join("freezer.state"), "FROZEN")?;
        settle(|| Ok(read(&d.join("freezer.state"))?.trim() == "FROZEN"))
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        let Some(d) = self.dir("freezer") else {
            return Err(CgroupError::NoHierarchy);
        };
        write(&d.join("freezer.state"), "THAWED")?;
        settle(|| Ok(read(&d.join("freezer.state"))?.trim() == "THAWED"))
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let d = self
            .dir("pids")
            .or_else(|| self.dir("freezer"))
            .or_else(|| self.dirs.first().map(|(_, p)| p.as_path()))
            .ok_or(CgroupError::NoHierarchy)?;
        match std::fs::read_to_string(d.join("cgroup.procs")) {
            Ok(s) => Ok(parse_pids(&s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(io_err(d)(e)),
        }
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        if self.pids()?.is_empty() {
            return Ok(());
        }
        // Freeze first so nothing forks while we kill, then thaw so the kills land.
        let frozen =
            self.dir("freezer").map(|d| d.exists()).unwrap_or(false) && self.freeze().is_ok();
        for _ in 0..3 {
            for pid in self.pids()? {
                // SAFETY: kill(2) with a pid read from our own cgroup; no memory involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if frozen {
                let _ = self.thaw();
            }
            if settle_empty(self).is_ok() {
                return Ok(());
            }
        }
        Ok(())
    }

    fn oom_killed(&self) -> bool {
        self.dir("memory")
            .and_then(|d| std::fs::read_to_string(d.join("memory.oom_control")).ok())
            .and_then(|s| keyed(&s, "oom_kill"))
            .map(|n| n > 0)
            .unwrap_or(false)
    }

    fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let mut st = CgroupStats::default();
        if let Some(d) = self.dir("memory") {
            st.memory_bytes = read(&d.join("memory.usage_in_bytes"))?
                .trim()
                .parse()
                .unwrap_or(0);
            let lim: u64 = read(&d.join("memory.limit_in_bytes"))?
                .trim()
                .parse()
                .unwrap_or(u64::MAX);
            st.memory_limit = (lim < (1 << 62)).then_some(lim);
        }
        if let Some(d) = self.dir("cpuacct") {
            st.cpu_usage_ns = read(&d.join("cpuacct.usage"))?.trim().parse().unwrap_or(0);
        }
        if let Some(d) = self.dir("pids") {
            st.pids = read(&d.join("pids.current"))?.trim().parse().unwrap_or(0);
        }
        Ok(st)
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        for d in self.unique_dirs() {
            rmdir_retry(&d)?;
        }
        Ok(())
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.unique_dirs()
    }

    fn version(&self) -> &'static str {
        "v1"
    }
}

fn settle_empty(m: &V1) -> Result<(), CgroupError> {
    settle(|| Ok(m.pids()?.is_empty()))
}
