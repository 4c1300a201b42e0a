//! Volumes in the engine: what `create` needs (volumes made or found, bind sources
//! checked), the `volume` commands, and who uses what.

use super::{Engine, EngineError};
use crate::spec::{Isolation, Mount, MountKind};
use crate::volume::{Volume, VolumeStore};
use std::collections::BTreeMap;

/// A volume and the containers that name it.
#[derive(Debug)]
pub struct VolumeInfo {
    pub volume: Volume,
    pub mountpoint: String,
    pub users: Vec<String>,
}

impl Engine {
    pub(crate) fn volume_store(&self) -> Result<VolumeStore, EngineError> {
        Ok(VolumeStore::open(&self.paths.root)?)
    }

    /// Names of the containers (any state) whose mounts name `volume`.
    fn volume_users(&self, volume: &str) -> Result<Vec<String>, EngineError> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .filter(|r| {
                r.spec
                    .mounts
                    .iter()
                    .any(|m| m.kind == MountKind::Volume && m.source == volume)
            })
            .map(|r| r.name)
            .collect())
    }

    /// For `create`: bind sources must exist; named volumes are made if missing,
    /// anonymous ones made fresh (their names filled in). Returns the volumes this
    /// call made, for the caller to remove if the create fails later, and the volume
    /// store's lock, to hold until the container's record names them (so that no
    /// prune or rm takes them meanwhile).
    pub(crate) fn prepare_mounts(
        &self,
        mounts: &mut [Mount],
        isolation: Isolation,
        remapped: bool,
    ) -> Result<(Vec<String>, Option<crate::util::fs::Lock>), EngineError> {
        for m in mounts.iter() {
            if m.kind == MountKind::Bind {
                if std::fs::symlink_metadata(&m.source).is_err() {
                    return Err(EngineError::Invalid(format!(
                        "invalid mount config: bind source path does not exist: {}",
                        m.source
                    )));
                }
                if isolation == Isolation::Vm && !std::path::Path::new(&m.source).is_dir() {
                    return Err(EngineError::Invalid(format!(
                        "bind mount {}:{}: a microVM can bind only directories",
                        m.source, m.target
                    )));
                }
            }
        }
        if !mounts.iter().any(|m| m.kind == MountKind::Volume) {
            return Ok((Vec::new(), None));
        }
        let vs = self.volume_store()?;
        let lock = vs.lock()?;
        let mut made = Vec::new();
        let result = (|| {
            for m in mounts.iter_mut().filter(|m| m.kind == MountKind::Volume) {
                if m.anonymous {
                    m.source = crate::util::ids::new_id();
                }
                let (v, new) = vs.create(&m.source, BTreeMap::new(), m.anonymous)?;
                if v.remapped && !remapped && isolation == Isolation::Process {
                    return Err(EngineError::Invalid(format!(
                        "volume {} holds files a --userns remap container's root wrote (stored as host root's, setuid ones too): mount it in remapped containers (or microVMs) only",
                        m.source
                    )));
                }
                if new {
                    made.push(m.source.clone());
                }
                if remapped {
                    vs.mark_remapped(&m.source)?;
                }
            }
            Ok::<(), EngineError>(())
        })();
        if let Err(e) = result {
            for n in &made {
                let _ = vs.remove(n);
            }
            return Err(e);
        }
        Ok((made, Some(lock)))
    }

    /// Undo [`Engine::prepare_mounts`] after a failed create: the volumes it made,
    /// unless another container names them by now.
    pub(crate) fn unprepare_mounts(&self, made: &[String], id: &str) {
        if made.is_empty() {
            return;
        }
        if let Ok(vs) = self.volume_store() {
            if let Ok(_l) = vs.lock() {
                let others =
                    crate::teardown::named_by_others(&self.paths.root, id).unwrap_or_default();
                for n in made.iter().filter(|n| !others.contains(*n)) {
                    let _ = vs.remove(n);
                }
            }
        }
    }

    /// `volume create [NAME] [--label K=V]`.
    pub fn volume_create(
        &self,
        name: Option<&str>,
        labels: &[String],
    ) -> Result<Volume, EngineError> {
        let mut l = BTreeMap::new();
        for kv in labels {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            if k.is_empty() {
                return Err(EngineError::Invalid(format!("invalid label {kv:?}")));
            }
            l.insert(k.to_string(), v.to_string());
        }
        let vs = self.volume_store()?;
        let _g = vs.lock()?;
        let (name, anonymous) = match name {
            Some(n) => (n.to_string(), false),
            None => (crate::util::ids::new_id(), true),
        };
        Ok(vs.create(&name, l, anonymous)?.0)
    }

    /// Every volume with its users.
    pub fn volume_list(&self) -> Result<Vec<VolumeInfo>, EngineError> {
        let vs = self.volume_store()?;
        let recs = self.store.list()?;
        Ok(vs
            .list()?
            .into_iter()
            .map(|v| VolumeInfo {
                mountpoint: vs.data_dir(&v.name).display().to_string(),
                users: recs
                    .iter()
                    .filter(|r| {
                        r.spec
                            .mounts
                            .iter()
                            .any(|m| m.kind == MountKind::Volume && m.source == v.name)
                    })
                    .map(|r| r.name.clone())
                    .collect(),
                volume: v,
            })
            .collect())
    }

    /// `volume inspect`: Docker's fields.
    pub fn volume_inspect(&self, name: &str) -> Result<serde_json::Value, EngineError> {
        let vs = self.volume_store()?;
        let v = vs.get(name)?;
        Ok(serde_json::json!({
            "CreatedAt": v.created,
            "Driver": "local",
            "Labels": v.labels,
            "Mountpoint": vs.data_dir(name),
            "Name": v.name,
            "Options": {},
            "Scope": "local",
            "UsageData": {"Size": vs.size(name), "RefCount": self.volume_users(name)?.len()},
        }))
    }

    /// `volume rm`: refused while any container (running or not) names it.
    pub fn volume_remove(&self, name: &str) -> Result<(), EngineError> {
        let vs = self.volume_store()?;
        let _l = vs.lock()?;
        vs.get(name)?;
        let users = self.volume_users(name)?;
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        Ok(vs.remove(name)?)
    }

    /// `volume prune [-a]`: unused anonymous volumes (all unused ones with `all`).
    /// Returns the names removed and the bytes freed.
    pub fn volume_prune(&self, all: bool) -> Result<(Vec<String>, u64), EngineError> {
        let vs = self.volume_store()?;
        let _l = vs.lock()?;
        let mut gone = Vec::new();
        let mut freed = 0;
        for v in vs.list()? {
            if (v.anonymous || all) && self.volume_users(&v.name)?.is_empty() {
                freed += vs.size(&v.name);
                vs.remove(&v.name)?;
                gone.push(v.name);
            }
        }
        Ok((gone, freed))
    }
}
