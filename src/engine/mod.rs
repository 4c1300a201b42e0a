//! The library API behind the CLI (and, later, an API server): every user-visible
//! operation on containers and images goes through [`Engine`].

mod compare;
mod cp_stopped;
mod create;
mod export;
mod images;
mod io;
mod lifecycle;
mod network;
mod query;
mod user;
mod vmfiles;
mod volumes;

pub use compare::{Column, Report, Sees, Stat};
pub use cp_stopped::helper as cp_root_helper;
pub use create::CreateOptions;
pub use io::{CopyTarget, ExecOptions, LogOptions};
pub use lifecycle::{parse_signal, StartMode};
pub use network::NetworkSummary;
pub use query::{human_duration, ContainerSummary, Info};
pub use volumes::VolumeInfo;

use crate::image::{self, ImageError};
use crate::monitor::client::ClientError;
use crate::paths::Paths;
use crate::sandbox::SandboxError;
use crate::state::{self, StateError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Monitor(#[from] ClientError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    /// A bad flag or argument.
    #[error("{0}")]
    Invalid(String),
    /// The container is in the wrong state for the operation.
    #[error("{0}")]
    Conflict(String),
    /// The workload could not be started; carries run's exit code.
    #[error("{message}")]
    StartFailed { message: String, code: i32 },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    /// The exit code twinbox reports for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::StartFailed { code, .. } => *code,
            EngineError::Sandbox(e) => e.exit_code(),
            _ => 125,
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
    let what = what.into();
    move |source| EngineError::Io { what, source }
}

/// Receives (step, milliseconds) for each start-up step.
pub type PhaseHook = Box<dyn Fn(crate::phase::Phase, f64)>;

/// The engine: state store, image store, and where runtime files live.
pub struct Engine {
    pub paths: Paths,
    pub store: state::Store,
    pub images: image::Store,
    /// Called with each start-up step as the monitor reports it (`--explain`).
    pub on_phase: Option<PhaseHook>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn phase(&self, name: crate::phase::Phase, d: std::time::Duration) {
        if let Some(f) = &self.on_phase {
            f(name, d.as_secs_f64() * 1e3);
        }
    }

    pub fn open(paths: Paths) -> Result<Engine, EngineError> {
        paths.prepare().map_err(io_err(format!(
            "cannot prepare the state directories {} and {}",
            paths.root.display(),
            paths.run.display()
        )))?;
        let store = state::Store::open(&paths.root)?;
        store.sweep();
        let images = image::Store::open(&paths.root)?;
        Ok(Engine {
            paths,
            store,
            images,
            on_phase: None,
        })
    }
}
