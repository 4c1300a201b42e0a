//! The state store: one record per container, atomic writes, flock-serialized updates.
//!
//! Layout under the state root (default /var/lib/twinbox):
//!
//! ```text
//! containers/<id>/config.json   the record (atomic: temp + fsync + rename)
//! containers/<id>/...           per-container files (logs, overlay upper, scratch disk)
//! containers.lock               flock taken for every read-modify-write
//! ```

mod record;
mod store;

pub use record::{ContainerRecord, ContainerState, LogConfig, Status, VmFiles};
pub use store::{Creating, Damaged, StateError, Store, CREATING_LOCK};
