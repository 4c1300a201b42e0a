//! `twinbox compare`: one workload, both isolation models, one table.

use crate::engine::{Column, Engine, EngineError, Report, Stat};
use crate::lab::{LabCommand, LabRun};
use crate::spec::Isolation;
use crate::util::size::human_binary;
use clap::Args;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Measured runs per model (after one warm-up run)
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// "table" or "json"
    #[arg(long, default_value = "table")]
    format: String,
    /// Measure one model only
    #[arg(long)]
    only: Option<Isolation>,
    /// Image to run
    image: String,
    /// Command and arguments (default: the image's)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.2} ms")
    }
}

fn stat(s: &Stat) -> String {
    format!("{} ({}–{})", ms(s.median), ms(s.min), ms(s.max))
}

/// Whether this host's KVM can run our guest natively.
fn native_vm_possible() -> bool {
    std::path::Path::new("/dev/kvm").exists() && !crate::vmm::is_pvm_host()
}

fn vm_in_lab(a: &CompareArgs) -> Result<Column, EngineError> {
    let mut args = vec![
        "compare".to_string(),
        "--only".into(),
        "vm".into(),
        "--format".into(),
        "json".into(),
        "--runs".into(),
        a.runs.to_string(),
        a.image.clone(),
    ];
    args.extend(a.command.iter().cloned());
    eprintln!("compare: this host's KVM cannot run a standard guest; measuring the vm column in the lab (emulated)");
    let out = crate::lab::run(&LabRun {
        what: LabCommand::Args(args),
        cpu: "qemu64,+svm,+npt".into(),
        mem_mib: 2048,
        smp: 1,
        timeout: 1800,
        console: false,
        cache: crate::paths::default_cache(),
        with_qemu: false,
        disks: Vec::new(),
    })
    .map_err(|e| EngineError::Invalid(e.to_string()))?;
    if out.code != 0 {
        return Err(EngineError::Invalid(format!(
            "the vm column failed in the lab: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let r: Report = serde_json::from_slice(&out.stdout)
        .map_err(|e| EngineError::Invalid(format!("bad report from the lab: {e}")))?;
    let mut c = r
        .columns
        .into_iter()
        .next()
        .ok_or_else(|| EngineError::Invalid("the lab returned no column".into()))?;
    c.emulated = true;
    Ok(c)
}

pub fn compare(engine: &Engine, a: CompareArgs) -> Result<i32, EngineError> {
    let mut report = Report {
        image: a.image.clone(),
        command: a.command.clone(),
        runs: a.runs,
        host_kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        columns: Vec::new(),
    };
    let want = |i: Isolation| a.only.is_none() || a.only == Some(i);
    if want(Isolation::Process) {
        report.columns.push(engine.compare_column(
            &a.image,
            &a.command,
            Isolation::Process,
            a.runs,
        )?);
    }
    if want(Isolation::Vm) {
        let c = if native_vm_possible() || a.only == Some(Isolation::Vm) {
            engine.compare_column(&a.image, &a.command, Isolation::Vm, a.runs)?
        } else {
            vm_in_lab(&a)?
        };
        report.columns.push(c);
    }
    if a.format == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", render(&report));
    }
    Ok(0)
}

/// The comparison as a text table.
/// A table being built: labelled rows of one cell per column.
struct Table<'a> {
    cols: &'a [Column],
    rows: Vec<(String, Vec<String>)>,
}

impl<'a> Table<'a> {
    fn section(&mut self, title: &str) {
        self.rows
            .push((title.to_string(), vec![String::new(); self.cols.len()]));
    }

    fn row(&mut self, label: &str, cell: impl Fn(&'a Column) -> String) {
        let cells = self.cols.iter().map(cell).collect();
        self.rows.push((label.to_string(), cells));
    }
}

/// Each start-up phase either model took, in the order first seen; the totals.
fn startup_rows(t: &mut Table) {
    t.section("start-up (medians)");
    let mut names: Vec<crate::phase::Phase> = Vec::new();
    for c in t.cols {
        for (n, _) in &c.phases {
            if !names.contains(n) {
                names.push(*n);
            }
        }
    }
    for n in names {
        t.row(&format!("  {n}"), |c| {
            c.phases
                .iter()
                .find(|(p, _)| *p == n)
                .map(|(_, s)| ms(s.median))
                .unwrap_or_default()
        });
    }
    t.row("total, create to exit", |c| stat(&c.wall_ms));
    t.row("CPU time on the host", |c| ms(c.cpu_ms.median));
}

fn memory_rows(t: &mut Table) {
    t.section("host memory (peak RSS)");
    t.row("  monitor (vm: VMM, without guest RAM)", |c| {
        human_binary(c.monitor_rss)
    });
    t.row("  workload processes", |c| {
        if c.isolation == "process" {
            human_binary(c.workload_rss)
        } else {
            "inside the guest".into()
        }
    });
    t.row("  guest RAM (resident)", |c| {
        match (c.guest_ram, c.guest_resident) {
            (Some(g), Some(res)) => format!("{} ({})", human_binary(g), human_binary(res)),
            _ => "none: shares the host's".into(),
        }
    });
    t.row("exit code", |c| c.exit_code.to_string());
}

fn sees_rows(t: &mut Table, host_kernel: &str) {
    t.section("what the workload sees");
    t.row("  kernel", |c| {
        let whose = if c.sees.kernel == host_kernel {
            "host's"
        } else {
            "its own"
        };
        format!("{} ({whose})", c.sees.kernel)
    });
    t.row("  its PID", |c| c.sees.pid.clone());
    t.row("  processes it can see", |c| c.sees.processes.clone());
    t.row("  entries in /dev", |c| c.sees.devices.clone());
    t.row("  CPUs", |c| c.sees.cpus.clone());
    t.row("  memory (MemTotal)", |c| c.sees.memory.clone());
}

/// Columns padded to their widest cell.
fn layout(head: &[String], rows: &[(String, Vec<String>)]) -> String {
    let w0 = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|(_, v)| v[i].chars().count())
                .chain([head[i].chars().count()])
                .max()
                .unwrap_or(0)
                + 3
        })
        .collect();
    let mut out = format!("{:w0$}", "");
    for (i, h) in head.iter().enumerate() {
        out.push_str(&format!("{h:<w$}", w = widths[i]));
    }
    out.push('\n');
    for (label, vals) in rows {
        out.push_str(&format!("{label:w0$}"));
        for (i, v) in vals.iter().enumerate() {
            out.push_str(&format!("{v:<w$}", w = widths[i]));
        }
        out = out.trim_end().to_string();
        out.push('\n');
    }
    out
}

pub fn render(r: &Report) -> String {
    let cols = &r.columns;
    let head: Vec<String> = cols
        .iter()
        .map(|c| {
            if c.emulated {
                format!("{} (emulated, in the lab)", c.isolation)
            } else {
                c.isolation.clone()
            }
        })
        .collect();
    let mut t = Table {
        cols,
        rows: Vec::new(),
    };
    startup_rows(&mut t);
    memory_rows(&mut t);
    sees_rows(&mut t, &r.host_kernel);
    let mut out = format!(
        "twinbox compare: {} {} — {} runs per model after a warm-up; median (min–max)\n\n",
        r.image,
        r.command.join(" "),
        r.runs
    );
    out.push_str(&layout(&head, &t.rows));
    if cols.iter().any(|c| c.emulated) {
        out.push_str("\nemulated: measured inside `twinbox lab` (qemu TCG with nested KVM); compare ratios, not absolute times.\n");
    }
    out
}
