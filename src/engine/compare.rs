//! `compare`: the same workload under both isolation models, measured in one run.

use super::{CreateOptions, Engine, EngineError};
use crate::spec::Isolation;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Median and spread of a set of samples.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    pub fn of(samples: &[f64]) -> Stat {
        if samples.is_empty() {
            return Stat::default();
        }
        let mut v = samples.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stat {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

/// What the workload sees from inside.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Sees {
    pub kernel: String,
    pub pid: String,
    pub processes: String,
    pub devices: String,
    pub cpus: String,
    pub memory: String,
}

/// One isolation model's column.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Column {
    pub isolation: String,
    /// Measured in the lab's emulated machine (absolute times are not meaningful).
    pub emulated: bool,
    pub phases: Vec<(crate::phase::Phase, Stat)>,
    pub wall_ms: Stat,
    pub cpu_ms: Stat,
    /// Host memory: the monitor (for vm: the VMM, without guest RAM) and the workload.
    pub monitor_rss: u64,
    pub workload_rss: u64,
    pub guest_ram: Option<u64>,
    pub guest_resident: Option<u64>,
    pub exit_code: i32,
    pub output: String,
    pub sees: Sees,
    /// Every sample: wall time per run, ms.
    pub wall_samples: Vec<f64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Report {
    pub image: String,
    pub command: Vec<String>,
    pub runs: usize,
    pub host_kernel: String,
    pub columns: Vec<Column>,
}

/// The probe run inside each model: kernel, own pid, visible processes, devices, CPUs, RAM.
const PROBE: &str = "uname -r; echo $$; ls -d /proc/[0-9]* | wc -l; ls /dev | wc -l; nproc; grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2";

impl Engine {
    /// One measured run: wall time from create to exit, the record's metrics, output.
    fn measured_run(
        &self,
        o: &CreateOptions,
    ) -> Result<(f64, crate::state::ContainerRecord, String), EngineError> {
        let t = Instant::now();
        let (rec, _) = self.run(o, true)?;
        let code = self.wait(&rec.id)?;
        let wall = t.elapsed().as_secs_f64() * 1e3;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        self.logs(&rec.id, &super::LogOptions::default(), &mut out, &mut err)?;
        out.extend(err);
        let rec = self.store.load(&rec.id)?;
        let _ = self.remove(&rec.id, true, true);
        let _ = code;
        Ok((wall, rec, String::from_utf8_lossy(&out).into_owned()))
    }

    /// Measure `cmd` in `image` under `isolation`, `runs` times after a warm-up.
    pub fn compare_column(
        &self,
        image: &str,
        cmd: &[String],
        isolation: Isolation,
        runs: usize,
    ) -> Result<Column, EngineError> {
        let base = CreateOptions {
            image: image.to_string(),
            cmd: cmd.to_vec(),
            isolation: Some(isolation),
            ..Default::default()
        };
        // Warm-up: unpack layers, build the VM disks' cache, fill the page cache.
        self.measured_run(&base)?;
        let mut walls = Vec::new();
        let mut cpu = Vec::new();
        let mut phase_samples: Vec<(crate::phase::Phase, Vec<f64>)> = Vec::new();
        let mut last = None;
        for _ in 0..runs.max(1) {
            let (wall, rec, out) = self.measured_run(&base)?;
            walls.push(wall);
            if let Some(m) = &rec.state.metrics {
                cpu.push(m.monitor_cpu_ms + m.workload_cpu_ms);
                for (name, ms) in &m.phases {
                    match phase_samples.iter_mut().find(|(n, _)| n == name) {
                        Some((_, v)) => v.push(*ms),
                        None => phase_samples.push((*name, vec![*ms])),
                    }
                }
            }
            last = Some((rec, out));
        }
        let (rec, output) = last.expect("at least one run");
        let m = rec.state.metrics.clone().unwrap_or_default();
        let probe = CreateOptions {
            cmd: vec!["sh".into(), "-c".into(), PROBE.into()],
            ..base.clone()
        };
        let sees = match self.measured_run(&probe) {
            Ok((_, _, out)) => {
                let l: Vec<&str> = out.lines().collect();
                let get = |i: usize| {
                    l.get(i)
                        .map(|s| s.trim().to_string())
                        .unwrap_or_else(|| "n/a".into())
                };
                Sees {
                    kernel: get(0),
                    pid: get(1),
                    processes: get(2),
                    devices: get(3),
                    cpus: get(4),
                    memory: l
                        .get(5)
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map(|kb| crate::util::size::human_binary(kb * 1024))
                        .unwrap_or_else(|| "n/a".into()),
                }
            }
            Err(_) => Sees::default(),
        };
        let vmm_overhead = match (m.guest_resident, isolation) {
            (Some(g), Isolation::Vm) => m.monitor_max_rss.saturating_sub(g),
            _ => m.monitor_max_rss,
        };
        Ok(Column {
            isolation: isolation.to_string(),
            emulated: false,
            phases: phase_samples
                .into_iter()
                .map(|(n, v)| (n, Stat::of(&v)))
                .collect(),
            wall_ms: Stat::of(&walls),
            cpu_ms: Stat::of(&cpu),
            monitor_rss: vmm_overhead,
            workload_rss: if isolation == Isolation::Process {
                m.workload_max_rss
            } else {
                0
            },
            guest_ram: m.guest_ram,
            guest_resident: m.guest_resident,
            exit_code: rec.state.exit_code.unwrap_or(-1),
            output,
            sees,
            wall_samples: walls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spread() {
        let s = Stat::of(&[5.0, 1.0, 3.0]);
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        assert_eq!(Stat::of(&[1.0, 2.0, 3.0, 10.0]).median, 2.5);
        assert_eq!(Stat::of(&[]), Stat::default());
    }
}
