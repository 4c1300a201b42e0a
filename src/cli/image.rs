//! Image commands.

use super::format;
use crate::engine::{Engine, EngineError};
use clap::{Args, Subcommand};
use serde::Serialize;

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only images of this repository (and tag)
    reference: Option<String>,
    /// Show all images. Docker hides intermediate build images without it; twinbox
    /// builds none, so every image (untagged ones too) is listed either way
    #[arg(short = 'a', long)]
    all: bool,
    /// Filter: dangling=true|false, reference=PATTERN (glob over the name)
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filter: Vec<String>,
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
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Display detailed information on images, as JSON
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show the history of an image
    History(HistoryArgs),
    /// Remove images
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag { source: String, target: String },
    /// Save images to a tar archive (docker-archive or OCI layout)
    Save(SaveArgs),
    /// Load images from a tar archive (docker-archive or OCI layout, plain or gzip)
    Load(LoadArgs),
    /// Import a root filesystem tarball as an image
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL)
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Author
    #[arg(short = 'a', long)]
    author: Option<String>,
    /// Pause a running process container while its changes are read
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set)]
    pause: bool,
    container: String,
    /// Name for the new image
    reference: Option<String>,
}

pub fn commit(engine: &Engine, a: CommitArgs) -> Result<i32, EngineError> {
    let id = engine.commit(
        &a.container,
        a.reference.as_deref(),
        &a.change,
        a.message.as_deref(),
        a.author.as_deref(),
        a.pause,
    )?;
    println!("{id}");
    Ok(0)
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Sizes in bytes
    #[arg(short = 'H', long = "human", default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// "table", "json", or a template
    #[arg(long)]
    format: Option<String>,
    image: String,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal of an image a stopped container uses
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all images no container uses, not just untagged ones
    #[arg(short = 'a', long)]
    all: bool,
    /// Do not prompt (there is no prompt; accepted for Docker compatibility)
    #[arg(short = 'f', long)]
    force: bool,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file instead of standard output
    #[arg(short = 'o', long)]
    output: Option<std::path::PathBuf>,
    /// docker-archive (default) or oci-archive
    #[arg(long, default_value = "docker-archive")]
    format: String,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from a file instead of standard input
    #[arg(short = 'i', long)]
    input: Option<std::path::PathBuf>,
    /// Suppress the output
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL)
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
    /// Tarball path, or - for standard input
    file: String,
    /// Name for the image
    reference: Option<String>,
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
    let filter = super::image_filter::ImageFilter::new(a.reference.as_deref(), &a.filter)
        .map_err(EngineError::Invalid)?;
    let _ = a.all;
    let now = chrono::Utc::now();
    let mut rows = Vec::new();
    for (name, reason) in engine.images.damaged()? {
        Engine::warn(&format!(
            "twinbox: image {name} is damaged ({reason}): `twinbox rmi {name}` removes it"
        ));
    }
    for img in engine.images.list()? {
        let created = img.config.created().clone().unwrap_or_default();
        let since = format::ago(&created, now);
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
            if !filter.shows(Some(t.as_str()).filter(|_| !img.tags.is_empty())) {
                continue;
            }
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
    let mut header = vec!["REPOSITORY", "TAG"];
    if a.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    format::print_rows(a.format.as_deref(), &rows, &header, |r| {
        let mut v = vec![r.repository.clone(), r.tag.clone()];
        if a.digests {
            v.push(r.digest.clone());
        }
        v.extend([r.id.clone(), r.created_since.clone(), r.size.clone()]);
        v
    });
    Ok(0)
}

/// A history row as `--format` templates and the table see it: sizes human-readable
/// unless `--human=false`, as Docker prints them.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HistoryView {
    #[serde(rename = "ID")]
    id: String,
    created_at: String,
    created_since: String,
    created_by: String,
    size: String,
    comment: String,
}

pub fn history(engine: &Engine, a: HistoryArgs) -> Result<i32, EngineError> {
    let rows = engine.image_history(&a.image)?;
    if a.quiet {
        for r in &rows {
            println!("{}", r.id);
        }
        return Ok(0);
    }
    let now = chrono::Utc::now();
    let views: Vec<HistoryView> = rows
        .into_iter()
        .map(|r| HistoryView {
            created_since: format::ago(&r.created_at, now),
            size: if a.human {
                crate::util::size::human(r.size)
            } else {
                r.size.to_string()
            },
            id: r.id,
            created_at: r.created_at,
            created_by: r.created_by,
            comment: r.comment,
        })
        .collect();
    format::print_rows(
        a.format.as_deref(),
        &views,
        &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
        |r| {
            let mut by = r.created_by.clone();
            if !a.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            vec![
                r.id.clone(),
                r.created_since.clone(),
                by,
                r.size.clone(),
                r.comment.clone(),
            ]
        },
    );
    Ok(0)
}

pub fn rmi(engine: &Engine, a: RmiArgs) -> Result<i32, EngineError> {
    let mut code = 0;
    for i in &a.images {
        match engine.image_remove(i, a.force) {
            Ok(lines) => lines.iter().for_each(|l| println!("{l}")),
            Err(e) => {
                Engine::warn(&format!("twinbox: {}", crate::monitor::error_chain(&e)));
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn save(engine: &Engine, a: SaveArgs) -> Result<i32, EngineError> {
    let format: crate::image::archive::Format = a.format.parse().map_err(EngineError::Invalid)?;
    super::system::write_archive(a.output.as_deref(), |w| {
        engine.image_save(&a.images, format, w)
    })?;
    Ok(0)
}

pub fn load(engine: &Engine, a: LoadArgs) -> Result<i32, EngineError> {
    let lines = match &a.input {
        Some(p) => {
            let f = std::fs::File::open(p)
                .map_err(|e| EngineError::Invalid(format!("cannot read {}: {e}", p.display())))?;
            engine.image_load(f)?
        }
        None => engine.image_load(std::io::stdin().lock())?,
    };
    if !a.quiet {
        lines.iter().for_each(|l| println!("{l}"));
    }
    Ok(0)
}

pub fn import(engine: &Engine, a: ImportArgs) -> Result<i32, EngineError> {
    let id = if a.file == "-" {
        engine.import(
            &mut std::io::stdin().lock(),
            "-",
            a.reference.as_deref(),
            &a.change,
        )?
    } else {
        let mut f = std::fs::File::open(&a.file)
            .map_err(|e| EngineError::Invalid(format!("cannot read {}: {e}", a.file)))?;
        engine.import(&mut f, &a.file, a.reference.as_deref(), &a.change)?
    };
    println!("{id}");
    Ok(0)
}

pub fn prune(engine: &Engine, a: PruneArgs) -> Result<i32, EngineError> {
    let (gone, freed) = engine.image_prune(a.all)?;
    if !gone.is_empty() {
        println!("Deleted Images:");
        gone.iter().for_each(|g| println!("deleted: {g}"));
        println!();
    }
    println!("Total reclaimed space: {}", crate::util::size::human(freed));
    Ok(0)
}

pub fn image_command(engine: &Engine, c: ImageCommand) -> Result<i32, EngineError> {
    match c {
        ImageCommand::Ls(a) => images(engine, a),
        ImageCommand::History(a) => history(engine, a),
        ImageCommand::Rm(a) => rmi(engine, a),
        ImageCommand::Prune(a) => prune(engine, a),
        ImageCommand::Tag { source, target } => engine.image_tag(&source, &target).map(|_| 0),
        ImageCommand::Save(a) => save(engine, a),
        ImageCommand::Load(a) => load(engine, a),
        ImageCommand::Import(a) => import(engine, a),
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

pub fn pull(engine: &Engine, name: &str, insecure: bool, quiet: bool) -> Result<i32, EngineError> {
    let (digest, tag) = engine.pull(name, insecure, quiet)?;
    println!("Digest: {digest}");
    println!(
        "Status: Downloaded image for {}",
        tag.as_deref().unwrap_or(name)
    );
    Ok(0)
}

pub fn push(engine: &Engine, name: &str, insecure: bool) -> Result<i32, EngineError> {
    let (d, log) = engine.push(name, insecure)?;
    log.iter().for_each(|l| println!("{l}"));
    println!("{name}: digest: {d}");
    Ok(0)
}

/// `login`: the password from `-p` or stdin, never both.
pub fn login(
    engine: &Engine,
    server: &str,
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
    insecure: bool,
) -> Result<i32, EngineError> {
    let user = username.ok_or_else(|| EngineError::Invalid("login needs -u USERNAME".into()))?;
    let pass = match (password, password_stdin) {
        (Some(p), false) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| EngineError::Invalid(format!("reading the password: {e}")))?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        _ => {
            return Err(EngineError::Invalid(
                "login needs exactly one of -p PASSWORD or --password-stdin".into(),
            ))
        }
    };
    engine.login(server, &user, &pass, insecure)?;
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(engine: &Engine, server: &str) -> Result<i32, EngineError> {
    if engine.logout(server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(0)
}
