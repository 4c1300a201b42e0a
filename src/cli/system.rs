//! `version`, `info`.

use crate::engine::{Engine, EngineError};

pub fn version() -> Result<i32, EngineError> {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    println!("twinbox version {}", env!("CARGO_PKG_VERSION"));
    println!(" Isolation models: process (namespaces + cgroups), vm (KVM microVM)");
    println!(" OS/Arch:          linux/amd64");
    println!(" Host kernel:      {kernel}");
    Ok(0)
}

pub fn info(engine: &Engine) -> Result<i32, EngineError> {
    let i = engine.info()?;
    println!("Containers: {}", i.containers);
    println!(" Running: {}", i.running);
    println!(" Paused: {}", i.paused);
    println!(" Stopped: {}", i.stopped);
    println!("Images: {}", i.images);
    println!("Storage Driver: overlay");
    println!("Cgroup Version: {}", i.cgroup_version);
    println!("Default Isolation: {}", i.default_isolation);
    println!("Kernel Version: {}", i.kernel);
    println!("KVM: {}", i.kvm);
    println!("Root Dir: {}", i.root);
    println!("Run Dir: {}", i.run_root);
    Ok(0)
}

#[derive(clap::Subcommand, Debug)]
pub enum SystemCommand {
    /// Show disk usage: images, containers, and what could be reclaimed
    Df,
}

pub fn system_command(engine: &Engine, c: SystemCommand) -> Result<i32, EngineError> {
    match c {
        SystemCommand::Df => {
            let rows = engine.system_df()?;
            let data: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.kind.clone(),
                        r.total.to_string(),
                        r.active.to_string(),
                        crate::util::size::human(r.size),
                        crate::util::size::human(r.reclaimable),
                    ]
                })
                .collect();
            print!(
                "{}",
                super::format::table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &data)
            );
            Ok(0)
        }
    }
}

/// Write an archive to `output` — through a temporary file renamed at the end, so a
/// failure leaves no file — or to standard output unless that is a terminal.
pub fn write_archive(
    output: Option<&std::path::Path>,
    write: impl FnOnce(&mut dyn std::io::Write) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    use std::io::Write;
    match output {
        Some(p) => {
            let cannot = |e: &dyn std::fmt::Display| {
                EngineError::Invalid(format!("cannot write {}: {e}", p.display()))
            };
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| cannot(&e))?;
            let mut w = std::io::BufWriter::new(tmp.as_file());
            write(&mut w)?;
            w.flush().map_err(|e| cannot(&e))?;
            drop(w);
            tmp.persist(p).map_err(|e| cannot(&e))?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                return Err(EngineError::Invalid(
                    "refusing to write an archive to a terminal: use -o FILE or redirect".into(),
                ));
            }
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            write(&mut w)?;
            w.flush()
                .map_err(|e| EngineError::Invalid(format!("writing the archive: {e}")))?;
        }
    }
    Ok(())
}

/// `export CONTAINER [-o FILE]`.
pub fn export(
    engine: &Engine,
    container: &str,
    output: Option<std::path::PathBuf>,
) -> Result<i32, EngineError> {
    write_archive(output.as_deref(), |w| engine.export(container, w))?;
    Ok(0)
}
