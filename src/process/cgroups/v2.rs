//! cgroup v2: one unified hierarchy.

use super::*;
use crate::spec::Resources;

pub struct V2 {
    root: PathBuf,
    dir: PathBuf,
}

impl V2 {
    pub fn new(root: &Path, id: &str) -> V2 {
        V2 {
            root: root.to_path_buf(),
            dir: root.join("twinbox").join(id),
        }
    }

    /// Enable the controllers we use for the children of `parent`.
    fn delegate(&self, parent: &Path) -> Result<(), CgroupError> {
        let available = read(&parent.join("cgroup.controllers"))?;
        let want: Vec<String> = ["cpu", "cpuset", "memory", "pids"]
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if !want.is_empty() {
            write(&parent.join("cgroup.subtree_control"), &want.join(" "))?;
        }
        Ok(())
    }
}

impl CgroupManager for V2 {
    fn create(&self, res: &Resources, all_devices: bool) -> Result<(), CgroupError> {
        let parent = self.root.join("twinbox");
        std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        self.delegate(&self.root)?;
        self.delegate(&parent)?;
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        if !all_devices {
            // v2 has no devices files: the rules are an eBPF program on the cgroup.
            super::devices::attach(&self.dir, super::devices::DEFAULT)
                .map_err(io_err(&self.dir))?;
        }
        if let Some(mem) = res.memory {
            write(&self.dir.join("memory.max"), &mem.to_string())?;
            let sw = self.dir.join("memory.swap.max");
            if sw.exists() {
                write(&sw, "0")?;
            }
        }
        if let Some(cpus) = &res.cpuset_cpus {
            let f = self.dir.join("cpuset.cpus");
            if !f.exists() {
                return Err(CgroupError::Io {
                    path: f,
                    source: std::io::Error::other("the cpuset controller is not available"),
                });
            }
            write(&f, cpus)?;
        }
        if let Some(cpus) = res.cpus {
            let period = 100_000u64;
            let quota = ((cpus * period as f64) as u64).max(1000);
            write(&self.dir.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        if let Some(pids) = res.pids_limit {
            let v = if pids <= 0 {
                "max".to_string()
            } else {
                pids.to_string()
            };
            write(&self.dir.join("pids.max"), &v)?;
        }
        Ok(())
    }

    fn add(&self, pid: i32) -> Result<(), CgroupError> {
        write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        write(&self.dir.join("cgroup.freeze"), "1")?;
        settle(|| Ok(keyed(&read(&self.dir.join("cgroup.events"))?, "frozen") == Some(1)))
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        write(&self.dir.join("cgroup.freeze"), "0")?;
        settle(|| Ok(keyed(&read(&self.dir.join("cgroup.events"))?, "frozen") == Some(0)))
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        match std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            Ok(s) => Ok(parse_pids(&s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(io_err(&self.dir)(e)),
        }
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        if !self.dir.exists() || self.pids()?.is_empty() {
            return Ok(());
        }
        let kill = self.dir.join("cgroup.kill");
        if kill.exists() {
            write(&kill, "1")?;
        } else {
            let _ = self.freeze();
            for pid in self.pids()? {
                // SAFETY: kill(2) with a pid read from our own cgroup; no memory involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = self.thaw();
        }
        settle(|| Ok(self.pids()?.is_empty()))
    }

    fn oom_killed(&self) -> bool {
        std::fs::read_to_string(self.dir.join("memory.events"))
            .ok()
            .and_then(|s| keyed(&s, "oom_kill"))
            .map(|n| n > 0)
            .unwrap_or(false)
    }

    fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let mut st = CgroupStats::default();
        if let Ok(s) = std::fs::read_to_string(self.dir.join("memory.current")) {
            st.memory_bytes = s.trim().parse().unwrap_or(0);
        }
        if let Ok(s) = std::fs::read_to_string(self.dir.join("memory.peak")) {
            st.memory_peak = s.trim().parse().unwrap_or(0);
        }
        if let Ok(s) = std::fs::read_to_string(self.dir.join("memory.max")) {
            st.memory_limit = s.trim().parse().ok();
        }
        if let Ok(s) = std::fs::read_to_string(self.dir.join("cpu.stat")) {
            st.cpu_usage_ns = keyed(&s, "usage_usec").unwrap_or(0) * 1000;
        }
        if let Ok(s) = std::fs::read_to_string(self.dir.join("pids.current")) {
            st.pids = s.trim().parse().unwrap_or(0);
        }
        Ok(st)
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        rmdir_retry(&self.dir)
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }

    fn version(&self) -> &'static str {
        "v2"
    }
}
