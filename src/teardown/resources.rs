//! The teardown steps that need only the state tree: the record, the cgroup of a
//! container whose monitor is gone, ports, leases, volumes, runtime files, devices.

use super::{Host, Occasion, Step};
use crate::paths::Paths;
use crate::spec::MountKind;
use crate::state::{ContainerRecord, ContainerState, StateError, Status, Store};
use crate::volume::VolumeStore;
use std::collections::HashSet;
use std::path::Path;

/// The container being taken apart, and where its state lives. Without its record
/// (damaged), the steps that need what it names (leases, volumes, devices) have nothing
/// to do.
#[derive(Debug)]
pub struct Resources<'a> {
    pub paths: &'a Paths,
    pub store: &'a Store,
    pub id: &'a str,
    pub rec: Option<&'a ContainerRecord>,
}

impl Resources<'_> {
    fn record_end(&self, occasion: &Occasion) -> Result<(), String> {
        let id = self.id;
        let r = match occasion {
            Occasion::Exited {
                info,
                metrics,
                auto_remove,
                ..
            } => {
                let f = |r: &mut ContainerRecord| {
                    r.state.status = Status::Exited;
                    r.state.exit_code = Some(info.code);
                    r.state.oom_killed = info.oom_killed;
                    r.state.finished_at = Some(chrono::Utc::now());
                    r.state.pid = 0;
                    r.state.metrics = Some(metrics.clone());
                };
                // A --rm container is removed right after: its final record need not
                // reach the disk.
                if *auto_remove {
                    self.store.update_volatile(id, f)
                } else {
                    self.store.update(id, f)
                }
            }
            Occasion::StartFailed { error, sandbox, .. } => self.store.update(id, |r| {
                if *sandbox {
                    // It was recorded running: it is not.
                    r.state = ContainerState::default();
                }
                r.state.error = error.clone();
            }),
            Occasion::MonitorDead { .. } => self.store.update(id, |r| {
                if r.is_active() {
                    r.state.status = Status::Exited;
                    r.state.exit_code = Some(137);
                    r.state.pid = 0;
                    r.state.finished_at = Some(chrono::Utc::now());
                    r.state.error =
                        "the container's monitor process died; the workload was killed with it"
                            .into();
                    r.state.ports.clear();
                }
            }),
            _ => return Ok(()),
        };
        r.map(|_| ()).map_err(|e| crate::util::error_chain(&e))
    }

    fn remove_record(&self, occasion: &Occasion) -> Result<(), String> {
        if *occasion == Occasion::Abandoned {
            return match self.store.remove_if_abandoned(self.id) {
                Some(_) => Ok(()),
                None => Err("the container is no longer abandoned".into()),
            };
        }
        match self.store.remove(self.id) {
            Ok(()) | Err(StateError::NotFound(_)) => Ok(()),
            Err(e) => Err(crate::util::error_chain(&e)),
        }
    }
}

impl Host for Resources<'_> {
    fn take(&mut self, step: Step, occasion: &Occasion) -> Result<(), String> {
        let root = &self.paths.root;
        match step {
            // Only the monitor holds a sandbox and clients: nothing to do here.
            Step::StopSandbox | Step::Announce => {}
            Step::KillCgroup => {
                if let Ok(cg) = crate::process::cgroups::manager(self.id) {
                    let _ = cg.thaw();
                    let _ = cg.kill_all();
                    cg.destroy().map_err(|e| e.to_string())?;
                }
            }
            Step::RecordEnd => self.record_end(occasion)?,
            // Its record no longer says running: rewriting the rules drops its ports.
            Step::Unpublish => crate::network::session::unpublish(root, self.store, true),
            Step::RemoveRecord => self.remove_record(occasion)?,
            Step::ReleaseLeases => {
                if let Some(rec) = self.rec {
                    crate::network::session::release_leases(root, rec)
                }
            }
            Step::ReleaseVolumes => {
                if let Some(rec) = self.rec {
                    release_anonymous(root, rec)
                }
            }
            Step::RemoveRuntimeDir => {
                crate::util::fs::remove_dir_all_if_exists(&self.paths.run_dir(self.id))
                    .map_err(|e| e.to_string())?
            }
            Step::RemoveDevices => {
                if let Some(rec) = self.rec {
                    crate::network::session::remove_devices(rec)
                }
            }
        }
        Ok(())
    }
}

/// Names of the volumes some container other than `except` names.
pub(crate) fn named_by_others(root: &Path, except: &str) -> Option<HashSet<String>> {
    let store = Store::open(root).ok()?;
    Some(
        store
            .list()
            .ok()?
            .into_iter()
            .filter(|r| r.id != except)
            .flat_map(|r| r.spec.mounts)
            .filter(|m| m.kind == MountKind::Volume)
            .map(|m| m.source)
            .collect(),
    )
}

/// Remove the anonymous volumes of a removed container (`rm -v`, `run --rm`) that no
/// other container names (`-v <its id>:/x` makes one shared).
pub fn release_anonymous(root: &Path, rec: &ContainerRecord) {
    let Ok(vs) = VolumeStore::open(root) else {
        return;
    };
    let Ok(_l) = vs.lock() else { return };
    let Some(others) = named_by_others(root, &rec.id) else {
        return;
    };
    for m in &rec.spec.mounts {
        if m.kind == MountKind::Volume && m.anonymous && !others.contains(&m.source) {
            let _ = vs.remove(&m.source);
        }
    }
}
