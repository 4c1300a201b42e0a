//! The volume store on disk.

use crate::util::fs::{atomic_write, remove_dir_all_if_exists, Lock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum VolumeError {
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("volume store I/O at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One volume's metadata.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Volume {
    pub name: String,
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Made for one container (`-v /path`); `rm -v` and `run --rm` remove it.
    #[serde(default)]
    pub anonymous: bool,
    /// A `--userns remap` container has used it: through its idmapped view, that
    /// container's root writes files stored as host root's (setuid ones included), so
    /// no plain process container may mount it any more.
    #[serde(default)]
    pub remapped: bool,
}

#[derive(Debug)]
pub struct VolumeStore {
    dir: PathBuf,
}

impl VolumeStore {
    pub fn open(root: &Path) -> Result<VolumeStore, VolumeError> {
        let dir = root.join("volumes");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(VolumeStore { dir })
    }

    pub fn lock(&self) -> Result<Lock, VolumeError> {
        let p = self.dir.join(".lock");
        Lock::exclusive(&p).map_err(io_err(&p))
    }

    /// Where a volume's data lives (the mount source).
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("_data")
    }

    /// [`VolumeStore::data_dir`] for the store under `root`, without opening it.
    pub fn data_dir_in(root: &Path, name: &str) -> PathBuf {
        root.join("volumes").join(name).join("_data")
    }

    fn meta_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("volume.json")
    }

    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        let p = self.meta_path(name);
        if !super::parse::valid_name(name) {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        let data = match fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_string()))
            }
            Err(e) => return Err(io_err(&p)(e)),
        };
        serde_json::from_slice(&data)
            .map_err(|e| io_err(&p)(io::Error::new(io::ErrorKind::InvalidData, e)))
    }

    /// Create a volume; a named one that exists is returned as it is (as Docker
    /// does). Returns (volume, whether this call made it). Callers hold the lock.
    pub fn create(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        anonymous: bool,
    ) -> Result<(Volume, bool), VolumeError> {
        if !super::parse::valid_name(name) {
            return Err(VolumeError::Invalid(format!(
                "invalid volume name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        match self.get(name) {
            Ok(v) => return Ok((v, false)),
            Err(VolumeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let v = Volume {
            name: name.to_string(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels,
            anonymous,
            remapped: false,
        };
        let data = self.data_dir(name);
        fs::create_dir_all(&data).map_err(io_err(&data))?;
        // The metadata last: a volume without it (a crash between) is not listed,
        // and the next create of that name finishes the job.
        let meta = self.meta_path(name);
        atomic_write(&meta, &serde_json::to_vec_pretty(&v).expect("serializes"))
            .map_err(io_err(&meta))?;
        Ok((v, true))
    }

    /// Mark a volume as used by a remapped container (see [`Volume::remapped`]).
    /// Callers hold the lock.
    pub fn mark_remapped(&self, name: &str) -> Result<(), VolumeError> {
        let mut v = self.get(name)?;
        if !v.remapped {
            v.remapped = true;
            let meta = self.meta_path(name);
            atomic_write(&meta, &serde_json::to_vec_pretty(&v).expect("serializes"))
                .map_err(io_err(&meta))?;
        }
        Ok(())
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, VolumeError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)
            .map_err(io_err(&self.dir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            match self.get(&name) {
                Ok(v) => out.push(v),
                Err(VolumeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Delete a volume and its data. Callers hold the lock and have checked that no
    /// container uses it.
    pub fn remove(&self, name: &str) -> Result<(), VolumeError> {
        self.get(name)?;
        let dir = self.dir.join(name);
        // The metadata first: a crash midway leaves an unlisted directory, not a
        // listed volume with half its data.
        let meta = self.meta_path(name);
        fs::remove_file(&meta).map_err(io_err(&meta))?;
        remove_dir_all_if_exists(&dir).map_err(io_err(&dir))
    }

    /// Bytes a volume's data takes on disk.
    pub fn size(&self, name: &str) -> u64 {
        crate::util::fs::disk_usage(&self.data_dir(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_get_list_remove() {
        let d = tempfile::tempdir().unwrap();
        let s = VolumeStore::open(d.path()).unwrap();
        let (v, made) = s.create("data", BTreeMap::new(), false).unwrap();
        assert!(made && v.name == "data" && !v.anonymous);
        assert!(s.data_dir("data").is_dir());
        let (_, made) = s.create("data", BTreeMap::new(), false).unwrap();
        assert!(!made, "an existing name is returned, not remade");
        fs::write(s.data_dir("data").join("f"), b"x").unwrap();
        assert_eq!(s.get("data").unwrap(), v);
        s.create("other", BTreeMap::new(), true).unwrap();
        let names: Vec<String> = s.list().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["data", "other"]);
        s.remove("data").unwrap();
        assert!(matches!(s.get("data"), Err(VolumeError::NotFound(_))));
        assert!(!d.path().join("volumes/data").exists());
        assert!(matches!(s.remove("data"), Err(VolumeError::NotFound(_))));
        assert!(s.create("../x", BTreeMap::new(), false).is_err());
        assert!(matches!(s.get("../x"), Err(VolumeError::NotFound(_))));
    }

    #[test]
    fn a_half_made_volume_is_not_listed_and_is_finished_by_create() {
        let d = tempfile::tempdir().unwrap();
        let s = VolumeStore::open(d.path()).unwrap();
        fs::create_dir_all(s.data_dir("half")).unwrap();
        assert!(s.list().unwrap().is_empty());
        let (_, made) = s.create("half", BTreeMap::new(), false).unwrap();
        assert!(made);
        assert_eq!(s.list().unwrap().len(), 1);
    }
}
