//! The command line: clap definitions and printing. Everything it does goes through
//! the engine.

mod bench;
mod compare;
mod container;
mod format;
mod image;
mod image_filter;
mod lab;
mod network;
mod system;
mod vm;
mod volume;

use crate::engine::{Engine, EngineError};
use crate::paths::{Paths, DEFAULT_ROOT, DEFAULT_RUN_ROOT};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "twinbox",
    version,
    about = "Run the same container image as an isolated process or in its own KVM microVM, and compare the two",
    propagate_version = true
)]
pub struct Cli {
    /// Directory for persistent state (containers, images).
    #[arg(long, global = true, env = "TWINBOX_ROOT", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Directory for runtime files (control sockets, mount points).
    #[arg(long, global = true, env = "TWINBOX_RUN_ROOT", default_value = DEFAULT_RUN_ROOT)]
    pub run_root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create and start a container (foreground unless -d)
    Run(container::RunArgs),
    /// Create a container without starting it
    Create(container::CreateArgs),
    /// Start one or more stopped containers
    Start(container::StartArgs),
    /// Stop running containers (SIGTERM, then SIGKILL after the grace period)
    Stop(container::StopArgs),
    /// Send a signal to running containers
    Kill(container::KillArgs),
    /// Restart containers
    Restart(container::StopArgs),
    /// Freeze every process of containers (process: cgroup freezer; vm: vCPUs stopped)
    Pause(container::Refs),
    /// Thaw paused containers
    Unpause(container::Refs),
    /// Remove containers
    Rm(container::RmArgs),
    /// List containers
    Ps(container::PsArgs),
    /// Low-level information on containers, as JSON
    Inspect(container::Refs),
    /// Rename a container
    Rename { old: String, new: String },
    /// Block until containers stop, then print their exit codes
    Wait(container::Refs),
    /// Print a container's logs
    Logs(container::LogsArgs),
    /// Run a command in a running container
    Exec(container::ExecArgs),
    /// Attach to a running container's stdio (detach with Ctrl-P Ctrl-Q)
    Attach { container: String },
    /// Copy files between a container and the host: `cp CONTAINER:SRC DEST` or `cp SRC CONTAINER:DEST`
    Cp { src: String, dst: String },
    /// List the processes of a container
    Top { container: String },
    /// Resource usage of a container
    Stats(container::StatsArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(container::ContainerCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// List a container's published ports
    Port {
        container: String,
        /// Only this container port (PORT[/PROTO])
        private_port: Option<String>,
    },
    /// List images
    Images(image::ImagesArgs),
    /// Manage images
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Show the history of an image
    History(image::HistoryArgs),
    /// Remove images
    Rmi(image::RmiArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag { source: String, target: String },
    /// Save images to a tar archive (docker-archive or OCI layout)
    Save(image::SaveArgs),
    /// Load images from a tar archive
    Load(image::LoadArgs),
    /// Import a root filesystem tarball as an image
    Import(image::ImportArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff { container: String },
    /// Export a container's filesystem as a tar archive
    Export {
        /// Write to a file instead of standard output
        #[arg(short = 'o', long)]
        output: Option<std::path::PathBuf>,
        container: String,
    },
    /// Disk usage and clean-up
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Show twinbox's version
    Version,
    /// System-wide information
    Info,
    /// Run the same workload under both isolation models and compare them in one table
    Compare(compare::CompareArgs),
    /// Start-up and overhead benchmarks with peers (crun, runc, qemu); JSON and SVG charts
    Bench(bench::BenchArgs),
    /// Run twinbox in an emulated machine with AMD-V (for hosts whose KVM cannot run a standard guest)
    Lab(lab::LabArgs),
    /// (internal) mount a stopped container's root privately and copy PATH out of it
    /// (a tar on stdout) or, with --into, into it (a tar on stdin)
    #[command(hide = true)]
    CpRoot {
        dir: std::path::PathBuf,
        overlay: String,
        path: String,
        #[arg(long)]
        into: bool,
    },
    /// (debug) boot a kernel in a bare microVM; the serial console goes to stderr
    #[command(hide = true)]
    VmBoot(vm::VmBootArgs),
    /// Create a new image from a container's changes
    Commit(image::CommitArgs),
    /// Download an image from a registry
    Pull {
        name: String,
        /// Plain HTTP (as for localhost, and for the insecure-registries of
        /// /etc/twinbox/daemon.json)
        #[arg(long)]
        insecure: bool,
        /// No progress output
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Upload an image to a registry
    Push {
        name: String,
        /// Plain HTTP (as for localhost, and for the insecure-registries of
        /// /etc/twinbox/daemon.json)
        #[arg(long)]
        insecure: bool,
    },
    /// Log in to a registry (credentials kept in Docker's config.json)
    Login {
        server: String,
        #[arg(short = 'u', long)]
        username: Option<String>,
        #[arg(short = 'p', long)]
        password: Option<String>,
        /// Read the password from standard input
        #[arg(long)]
        password_stdin: bool,
        /// Plain HTTP (as for localhost, and for the insecure-registries of
        /// /etc/twinbox/daemon.json)
        #[arg(long)]
        insecure: bool,
    },
    /// Log out from a registry
    Logout { server: String },
}

/// Run the CLI; returns the process exit code.
pub fn main(cli: Cli) -> Result<i32, EngineError> {
    let paths = Paths::new(&cli.root, &cli.run_root);
    if let Command::Version = &cli.command {
        return system::version();
    }
    let command = cli.command;
    let command = match command {
        Command::VmBoot(a) => return vm::vm_boot(a),
        Command::CpRoot {
            dir,
            overlay,
            path,
            into,
        } => {
            crate::engine::cp_root_helper(&dir, &overlay, &path, into)
                .map_err(|e| EngineError::Invalid(crate::util::error_chain(&e)))?;
            return Ok(0);
        }
        Command::Lab(a) => return lab::lab(a),
        other => other,
    };
    let mut engine = Engine::open(paths)?;
    match command {
        Command::Run(a) => container::run(&mut engine, a),
        Command::Create(a) => container::create(&engine, a),
        Command::Start(a) => container::start(&engine, a),
        Command::Stop(a) => container::stop(&engine, a),
        Command::Kill(a) => container::kill(&engine, a),
        Command::Restart(a) => container::restart(&engine, a),
        Command::Pause(r) => container::each(&r.containers, |c| engine.pause(c).map(|_| ())),
        Command::Unpause(r) => container::each(&r.containers, |c| engine.unpause(c).map(|_| ())),
        Command::Rm(a) => container::rm(&engine, a),
        Command::Ps(a) => container::ps(&engine, a),
        Command::Inspect(r) => container::inspect(&engine, r),
        Command::Rename { old, new } => engine.rename(&old, &new).map(|_| 0),
        Command::Wait(r) => container::wait(&engine, r),
        Command::Logs(a) => container::logs(&engine, a),
        Command::Exec(a) => container::exec(&engine, a),
        Command::Attach { container } => container::attach(&engine, &container),
        Command::Cp { src, dst } => container::cp(&engine, &src, &dst),
        Command::Diff { container } => container::diff(&engine, &container),
        Command::Top { container } => container::top(&engine, &container),
        Command::Stats(a) => container::stats(&engine, a),
        Command::Container(c) => container::container_command(&engine, c),
        Command::Network(c) => network::network_command(&engine, c),
        Command::Volume(c) => volume::volume_command(&engine, c),
        Command::Port {
            container,
            private_port,
        } => network::port(&engine, &container, private_port.as_deref()),
        Command::Images(a) => image::images(&engine, a),
        Command::Image(c) => image::image_command(&engine, c),
        Command::History(a) => image::history(&engine, a),
        Command::Rmi(a) => image::rmi(&engine, a),
        Command::Tag { source, target } => engine.image_tag(&source, &target).map(|_| 0),
        Command::Save(a) => image::save(&engine, a),
        Command::Load(a) => image::load(&engine, a),
        Command::Import(a) => image::import(&engine, a),
        Command::Export { output, container } => system::export(&engine, &container, output),
        Command::System(c) => system::system_command(&engine, c),
        Command::Info => system::info(&engine),
        Command::Compare(a) => compare::compare(&engine, a),
        Command::Bench(a) => bench::bench(&engine, a),
        Command::Commit(a) => image::commit(&engine, a),
        Command::Pull {
            name,
            insecure,
            quiet,
        } => image::pull(&engine, &name, insecure, quiet),
        Command::Push { name, insecure } => image::push(&engine, &name, insecure),
        Command::Login {
            server,
            username,
            password,
            password_stdin,
            insecure,
        } => image::login(
            &engine,
            &server,
            username,
            password,
            password_stdin,
            insecure,
        ),
        Command::Logout { server } => image::logout(&engine, &server),
        Command::Version | Command::VmBoot(_) | Command::Lab(_) | Command::CpRoot { .. } => Ok(0),
    }
}
