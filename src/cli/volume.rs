//! `volume …`.

use super::format;
use super::network::each;
use crate::engine::{Engine, EngineError};
use clap::{Args, Subcommand};
use serde::Serialize;

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume (a name is made up when none is given)
    Create {
        name: Option<String>,
        /// Driver: local (the only one)
        #[arg(short = 'd', long, default_value = "local")]
        driver: String,
        /// Set metadata on the volume
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls(LsVol),
    /// Show volumes as JSON
    Inspect {
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove volumes (no container may use them)
    #[command(alias = "remove")]
    Rm {
        /// Accepted for Docker compatibility (a volume in use is never removed)
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        volumes: Vec<String>,
    },
    /// Remove unused anonymous volumes (-a: every unused volume)
    Prune {
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not prompt (there is no prompt; accepted for Docker compatibility)
        #[arg(short = 'f', long)]
        force: bool,
    },
}

#[derive(Args, Debug)]
pub struct LsVol {
    /// Only names
    #[arg(short, long)]
    quiet: bool,
    /// Filter: dangling=true|false (used by no container or not), name=SUBSTRING
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// table, json, or a Go-style template
    #[arg(long)]
    format: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VolRow {
    driver: String,
    name: String,
    mountpoint: String,
    scope: String,
    links: usize,
}

pub fn volume_command(engine: &Engine, c: VolumeCommand) -> Result<i32, EngineError> {
    match c {
        VolumeCommand::Create {
            name,
            driver,
            labels,
        } => {
            if driver != "local" {
                return Err(EngineError::Invalid(format!(
                    "volume driver {driver:?} is not supported: only local"
                )));
            }
            let v = engine.volume_create(name.as_deref(), &labels)?;
            println!("{}", v.name);
            Ok(0)
        }
        VolumeCommand::Ls(a) => {
            let mut dangling = None;
            let mut name_has = Vec::new();
            for f in &a.filter {
                match f.split_once('=') {
                    Some(("dangling", "true" | "1")) => dangling = Some(true),
                    Some(("dangling", "false" | "0")) => dangling = Some(false),
                    Some(("name", v)) => name_has.push(v.to_string()),
                    _ => {
                        return Err(EngineError::Invalid(format!(
                            "invalid filter {f:?}: dangling=true|false or name=…"
                        )))
                    }
                }
            }
            let rows: Vec<VolRow> = engine
                .volume_list()?
                .into_iter()
                .filter(|v| dangling.is_none_or(|d| d == v.users.is_empty()))
                .filter(|v| name_has.iter().all(|n| v.volume.name.contains(n.as_str())))
                .map(|v| VolRow {
                    driver: "local".into(),
                    name: v.volume.name,
                    mountpoint: v.mountpoint,
                    scope: "local".into(),
                    links: v.users.len(),
                })
                .collect();
            if a.quiet {
                for r in &rows {
                    println!("{}", r.name);
                }
                return Ok(0);
            }
            format::print_rows(
                a.format.as_deref(),
                &rows,
                &["DRIVER", "VOLUME NAME"],
                |r| vec![r.driver.clone(), r.name.clone()],
            );
            Ok(0)
        }
        VolumeCommand::Inspect { volumes } => {
            let out = std::cell::RefCell::new(Vec::new());
            let code = each(
                &volumes,
                |n| engine.volume_inspect(n),
                |v| out.borrow_mut().push(v),
            );
            println!(
                "{}",
                serde_json::to_string_pretty(&out.into_inner()).unwrap_or_else(|_| "[]".into())
            );
            Ok(code)
        }
        VolumeCommand::Rm { volumes, .. } => Ok(each(
            &volumes,
            |n| engine.volume_remove(n).map(|_| n.to_string()),
            |n| println!("{n}"),
        )),
        VolumeCommand::Prune { all, .. } => {
            let (gone, freed) = engine.volume_prune(all)?;
            if !gone.is_empty() {
                println!("Deleted Volumes:");
                for n in &gone {
                    println!("{n}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", crate::util::size::human(freed));
            Ok(0)
        }
    }
}
