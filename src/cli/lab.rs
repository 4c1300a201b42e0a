//! `twinbox lab`: run twinbox inside an emulated machine with AMD-V.

use crate::engine::EngineError;
use crate::lab::{LabCommand, LabRun};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct LabArgs {
    /// CPU model of the emulated machine ("max" also works, slower)
    #[arg(long, default_value = "qemu64,+svm,+npt")]
    cpu: String,
    /// Memory of the emulated machine, MiB
    #[arg(long, default_value_t = 2048)]
    mem: u64,
    /// CPUs of the emulated machine
    #[arg(long, default_value_t = 1)]
    smp: u8,
    /// Seconds before the emulated machine is stopped
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Run this shell script in the lab instead (twinbox is on PATH)
    #[arg(long)]
    script: Option<PathBuf>,
    /// Show the emulated machine's console on stderr
    #[arg(long)]
    console: bool,
    /// Also put qemu in the emulated machine (a peer VMM for benchmarks)
    #[arg(long)]
    with_qemu: bool,
    /// Attach a host file read-only as a disk: /dev/vda, /dev/vdb, … in order (e.g. an
    /// image archive for `twinbox load -i /dev/vda`)
    #[arg(long = "disk", value_name = "FILE")]
    disks: Vec<PathBuf>,
    /// Cache for the lab's kernel and images
    #[arg(long, env = "TWINBOX_CACHE", default_value = "/var/cache/twinbox")]
    cache: PathBuf,
    /// twinbox arguments to run in the lab, e.g. `-- run --rm --isolation vm busybox uname -r`
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn lab(a: LabArgs) -> Result<i32, EngineError> {
    let what = match (&a.script, a.args.is_empty()) {
        (Some(p), true) => LabCommand::Script(
            std::fs::read_to_string(p)
                .map_err(|e| EngineError::Invalid(format!("cannot read {}: {e}", p.display())))?,
        ),
        (None, false) => LabCommand::Args(a.args.clone()),
        (Some(_), false) => {
            return Err(EngineError::Invalid(
                "give either --script or twinbox arguments, not both".into(),
            ))
        }
        (None, true) => {
            return Err(EngineError::Invalid(
                "nothing to run: `twinbox lab -- ARGS…` or `twinbox lab --script FILE`".into(),
            ))
        }
    };
    let out = crate::lab::run(&LabRun {
        what,
        cpu: a.cpu,
        mem_mib: a.mem,
        smp: a.smp,
        timeout: a.timeout,
        console: a.console,
        cache: a.cache,
        with_qemu: a.with_qemu,
        disks: a.disks,
    })
    .map_err(|e| EngineError::Invalid(e.to_string()))?;
    use std::io::Write;
    let _ = std::io::stdout().write_all(&out.stdout);
    let _ = std::io::stderr().write_all(&out.stderr);
    Ok(out.code)
}
