//! `twinbox bench`: benchmarks with peers, JSON + SVG per suite.

use crate::bench::{self, Report, Series, Suite};
use crate::engine::{Engine, EngineError};
use crate::lab::{LabCommand, LabRun};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Suites: startup, density, cpu, io, net (throughput), rtt (default: all)
    suites: Vec<String>,
    /// Samples per series (after a warm-up)
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Where bench.json and the charts go
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// Skip the microVM parts (they may need the lab, which takes minutes)
    #[arg(long)]
    no_vm: bool,
    /// (internal) run only the microVM parts, here, and print JSON
    #[arg(long, hide = true)]
    vm_here: bool,
}

fn native_vm_possible() -> bool {
    std::path::Path::new("/dev/kvm").exists() && !crate::vmm::is_pvm_host()
}

/// The microVM parts of `suites`, measured where this process runs.
fn vm_parts(engine: &Engine, suites: &[String], runs: usize, location: &str) -> Vec<Suite> {
    let mut out = Vec::new();
    for s in suites {
        let series: Vec<Series> = match s.as_str() {
            "startup" => bench::startup_vm(engine, runs, location),
            "cpu" => bench::cpu(engine, runs.min(5), &["vm"], location),
            // In the lab the process model is measured again beside the microVM, on
            // the same (emulated) machine.
            "io" => {
                let iso: &[&str] = if location == "lab" {
                    &["process", "vm"]
                } else {
                    &["vm"]
                };
                bench::io(engine, runs.min(5), iso, location)
            }
            "density" => vec![bench::density(engine, "vm", 3, location)],
            "net" | "rtt" => {
                if out
                    .iter()
                    .any(|x: &Suite| x.suite == "net" || x.suite == "rtt")
                {
                    continue;
                }
                // In the lab the floor and the process pair are measured again, on the
                // same (emulated) machine as the microVMs.
                let iso: &[&str] = if location == "lab" {
                    &["process", "vm"]
                } else {
                    &["vm"]
                };
                let (thr, rtt) = bench::net::suites(engine, runs.min(5), iso, location);
                out.push(Suite {
                    suite: "net".into(),
                    unit: String::new(),
                    series: thr,
                });
                out.push(Suite {
                    suite: "rtt".into(),
                    unit: String::new(),
                    series: rtt,
                });
                continue;
            }
            _ => continue,
        };
        out.push(Suite {
            suite: s.clone(),
            unit: String::new(),
            series,
        });
    }
    out
}

fn unit(suite: &str) -> &'static str {
    match suite {
        "startup" => "ms per sandbox, start to exit (`true`)",
        "cpu" => "ms for a 300k-iteration shell loop, timed inside",
        "io" => "ms to write 64 MiB (fsync) and read it back, and to untar 400 small files five times (metadata), timed inside: host, writable layer, volume; microVMs over virtio-fs and, for comparison, a bare microVM on an ext4 virtio-blk disk",
        "density" => "MiB of host memory (PSS of monitor and workload) per sleeping sandbox",
        "net" => "MiB/s: one TCP stream between two sandboxes (busybox nc; 64 MiB, lab 4 MiB)",
        "rtt" => "ms: ping round-trip between two sandboxes (mean of 5)",
        _ => "",
    }
}

/// The process model's side of each suite, on this host.
fn native_suites(engine: &Engine, suites: &[String], runs: usize) -> Vec<Suite> {
    let mut out = Vec::new();
    let mut net_pair: Option<(Vec<Series>, Vec<Series>)> = None;
    for s in suites {
        eprintln!("bench: {s} (native)");
        let series = match s.as_str() {
            "startup" => bench::startup_native(engine, runs),
            "cpu" => bench::cpu(engine, runs.min(5), &["process"], "native"),
            "io" => bench::io(engine, runs.min(5), &["process"], "native"),
            "density" => vec![bench::density(engine, "process", 16, "native")],
            "net" | "rtt" => {
                let (thr, rtt) = net_pair.get_or_insert_with(|| {
                    bench::net::suites(engine, runs.min(5), &["process"], "native")
                });
                if s == "net" {
                    thr.clone()
                } else {
                    rtt.clone()
                }
            }
            _ => vec![],
        };
        out.push(Suite {
            suite: s.clone(),
            unit: unit(s).into(),
            series,
        });
    }
    out
}

pub fn bench(engine: &Engine, a: BenchArgs) -> Result<i32, EngineError> {
    let suites: Vec<String> = if a.suites.is_empty() {
        bench::SUITES.iter().map(|s| s.to_string()).collect()
    } else {
        a.suites.clone()
    };
    if let Some(bad) = suites.iter().find(|s| !bench::SUITES.contains(&s.as_str())) {
        return Err(EngineError::Invalid(format!(
            "unknown suite {bad:?}: use {}",
            bench::SUITES.join(", ")
        )));
    }
    if a.vm_here {
        let r = Report {
            machine: bench::machine(),
            runs: a.runs,
            suites: vm_parts(engine, &suites, a.runs, "lab"),
        };
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
        return Ok(0);
    }
    let mut report = Report {
        machine: bench::machine(),
        runs: a.runs,
        suites: native_suites(engine, &suites, a.runs),
    };
    // The microVM side: natively where KVM runs a standard guest, else in the lab.
    let vm_suites: Vec<String> = suites.clone();
    let vm = if vm_suites.is_empty() || a.no_vm {
        Ok(vec![])
    } else if native_vm_possible() {
        Ok(vm_parts(engine, &vm_suites, a.runs, "native"))
    } else {
        eprintln!("bench: microVM parts in the lab (emulated), with qemu as a peer");
        let mut args = vec![
            "bench".to_string(),
            "--vm-here".into(),
            "--runs".into(),
            a.runs.to_string(),
        ];
        args.extend(vm_suites.iter().cloned());
        crate::lab::run(&LabRun {
            what: LabCommand::Args(args),
            cpu: "qemu64,+svm,+npt".into(),
            mem_mib: 2048,
            smp: 1,
            timeout: 3600,
            console: false,
            cache: crate::paths::default_cache(),
            with_qemu: true,
            disks: Vec::new(),
        })
        .map_err(|e| e.to_string())
        .and_then(|o| {
            if o.code != 0 {
                return Err(String::from_utf8_lossy(&o.stderr).trim().to_string());
            }
            serde_json::from_slice::<Report>(&o.stdout)
                .map(|r| r.suites)
                .map_err(|e| format!("bad report from the lab: {e}"))
        })
    };
    match vm {
        Ok(parts) => {
            for p in parts {
                if let Some(s) = report.suites.iter_mut().find(|s| s.suite == p.suite) {
                    s.series.extend(p.series);
                }
            }
        }
        Err(e) => {
            for s in report.suites.iter_mut() {
                s.series.push(bench::Series {
                    name: "microVM series".into(),
                    skipped: Some(format!("the lab run failed: {e}")),
                    ..Default::default()
                });
            }
        }
    }
    let files = bench::write(&report, &a.out)
        .map_err(|e| EngineError::Invalid(format!("cannot write {}: {e}", a.out.display())))?;
    for s in &report.suites {
        println!("{} — {}", s.suite, s.unit);
        for x in &s.series {
            match (&x.skipped, &x.stat) {
                (Some(why), _) => println!("  {:<44} skipped: {why}", x.name),
                (None, Some(st)) => println!(
                    "  {:<44} {:>10.2} (min {:.2}, max {:.2})  [{}]",
                    x.name, st.median, st.min, st.max, x.location
                ),
                _ => {}
            }
        }
    }
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(0)
}
