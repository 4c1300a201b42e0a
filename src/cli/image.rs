//! Image commands.

use super::format::{self, Format};
use crate::engine::{Engine, EngineError};
use clap::{Args, Subcommand};
use serde::Serialize;

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only show image IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// "table", "json", or a template like '{{.Repository}}:{{.Tag}}'
    #[arg(long)]
    format: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images
    Ls(ImagesArgs),
    /// Display detailed information on images, as JSON
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageRow {
    repository: String,
    tag: String,
    digest: String,
    #[serde(rename = "ID")]
    id: String,
    created_since: String,
    created_at: String,
    size: String,
}

pub fn images(engine: &Engine, a: ImagesArgs) -> Result<i32, EngineError> {
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for img in engine.images.list()? {
        let created = img.config.created().clone().unwrap_or_default();
        let since = chrono::DateTime::parse_from_rfc3339(&created)
            .map(|t| {
                format!(
                    "{} ago",
                    crate::engine::human_duration(
                        (now - t.with_timezone(&chrono::Utc)).num_seconds()
                    )
                )
            })
            .unwrap_or_else(|_| "N/A".into());
        let id = if a.no_trunc {
            img.id.clone()
        } else {
            img.short_id().to_string()
        };
        let tags = if img.tags.is_empty() {
            vec!["<none>:<none>".to_string()]
        } else {
            img.tags.clone()
        };
        for t in tags {
            let (repo, tag) = t.rsplit_once(':').unwrap_or((&t, "<none>"));
            rows.push(ImageRow {
                repository: repo.to_string(),
                tag: tag.to_string(),
                digest: img.manifest_digest.clone(),
                id: id.clone(),
                created_since: since.clone(),
                created_at: created.clone(),
                size: crate::util::size::human(img.size()),
            });
        }
    }
    if a.quiet {
        let mut seen = Vec::new();
        for r in &rows {
            if !seen.contains(&r.id) {
                println!("{}", r.id);
                seen.push(r.id.clone());
            }
        }
        return Ok(0);
    }
    match Format::parse(a.format.as_deref()) {
        Format::Json => rows
            .iter()
            .for_each(|r| println!("{}", serde_json::to_string(r).unwrap_or_default())),
        Format::Template(t) => rows
            .iter()
            .for_each(|r| println!("{}", format::template(&t, r))),
        Format::Table => {
            let mut header = vec!["REPOSITORY", "TAG"];
            if a.digests {
                header.push("DIGEST");
            }
            header.extend(["IMAGE ID", "CREATED", "SIZE"]);
            let data: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut v = vec![r.repository.clone(), r.tag.clone()];
                    if a.digests {
                        v.push(r.digest.clone());
                    }
                    v.extend([r.id.clone(), r.created_since.clone(), r.size.clone()]);
                    v
                })
                .collect();
            print!("{}", format::table(&header, &data));
        }
    }
    Ok(0)
}

pub fn image_command(engine: &Engine, c: ImageCommand) -> Result<i32, EngineError> {
    match c {
        ImageCommand::Ls(a) => images(engine, a),
        ImageCommand::Inspect { images } => {
            let mut out = Vec::new();
            let mut code = 0;
            for i in &images {
                match engine.image_inspect(i) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        Engine::warn(&format!("twinbox: {}", crate::monitor::error_chain(&e)));
                        code = 1;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            Ok(code)
        }
    }
}
