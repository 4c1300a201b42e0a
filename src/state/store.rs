//! Reading and writing container records.

use super::record::{ContainerRecord, Status};
use crate::util::fs::{atomic_write, atomic_write_volatile, remove_dir_all_if_exists, Lock};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container name {0:?} is already in use by container {1}")]
    NameInUse(String, String),
    #[error("container reference {0:?} is ambiguous: it matches several containers")]
    Ambiguous(String),
    #[error("state store I/O at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt container record {path}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The container records under `<root>/containers`.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store, StateError> {
        let dir = root.join("containers");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// The directory holding one container's files.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir(id).join("config.json")
    }

    /// Take the store-wide lock; every read-modify-write happens under it.
    pub fn lock(&self) -> Result<Lock, StateError> {
        let p = self.root.join("containers.lock");
        Lock::exclusive(&p).map_err(io_err(&p))
    }

    /// Read one record by exact id.
    pub fn load(&self, id: &str) -> Result<ContainerRecord, StateError> {
        let p = self.record_path(id);
        let data = fs::read(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StateError::NotFound(id.to_string())
            } else {
                StateError::Io {
                    path: p.clone(),
                    source: e,
                }
            }
        })?;
        serde_json::from_slice(&data).map_err(|source| StateError::Corrupt { path: p, source })
    }

    /// Write a record atomically. Callers hold the lock.
    pub fn save(&self, rec: &ContainerRecord) -> Result<(), StateError> {
        let dir = self.dir(&rec.id);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let p = self.record_path(&rec.id);
        let data = serde_json::to_vec_pretty(rec).map_err(|source| StateError::Corrupt {
            path: p.clone(),
            source,
        })?;
        atomic_write(&p, &data).map_err(io_err(&p))
    }

    /// Every record (unreadable directories, e.g. half-removed ones, are skipped).
    pub fn list(&self) -> Result<Vec<ContainerRecord>, StateError> {
        let dir = self.containers_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            match self.load(&name) {
                Ok(r) => out.push(r),
                Err(StateError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.created));
        Ok(out)
    }

    /// Resolve a name, full id or unique id prefix to an id.
    pub fn resolve(&self, reference: &str) -> Result<String, StateError> {
        let all = self.list()?;
        if let Some(r) = all
            .iter()
            .find(|r| r.id == reference || r.name == reference)
        {
            return Ok(r.id.clone());
        }
        let reference_trim = reference.trim_start_matches('/');
        if let Some(r) = all.iter().find(|r| r.name == reference_trim) {
            return Ok(r.id.clone());
        }
        let matches: Vec<_> = all
            .iter()
            .filter(|r| !reference.is_empty() && r.id.starts_with(reference))
            .collect();
        match matches.len() {
            0 => Err(StateError::NotFound(reference.to_string())),
            1 => Ok(matches[0].id.clone()),
            _ => Err(StateError::Ambiguous(reference.to_string())),
        }
    }

    /// Insert a new record with a fresh random name (chosen under the lock, so parallel
    /// creations never pick the same one). Returns the name.
    pub fn insert_named(&self, rec: &mut ContainerRecord) -> Result<String, StateError> {
        let _l = self.lock()?;
        let taken: Vec<String> = self.list()?.into_iter().map(|r| r.name).collect();
        let mut name = crate::util::ids::random_name();
        while taken.contains(&name) {
            name = format!(
                "{}_{}",
                crate::util::ids::random_name(),
                &crate::util::ids::new_id()[..4]
            );
        }
        rec.name = name.clone();
        self.save(rec)?;
        Ok(name)
    }

    /// Insert a new record, failing if its name is taken. Takes the lock itself.
    pub fn insert(&self, rec: &ContainerRecord) -> Result<(), StateError> {
        let _l = self.lock()?;
        if let Some(other) = self.list()?.into_iter().find(|r| r.name == rec.name) {
            return Err(StateError::NameInUse(
                rec.name.clone(),
                other.short_id().to_string(),
            ));
        }
        self.save(rec)
    }

    /// Read-modify-write one record under the lock, without flushing it to disk: for
    /// runtime status that reconciliation rebuilds if a power loss takes it back (see
    /// `atomic_write_volatile`).
    pub fn update_volatile<F>(&self, id: &str, f: F) -> Result<ContainerRecord, StateError>
    where
        F: FnOnce(&mut ContainerRecord),
    {
        let _l = self.lock()?;
        let mut rec = self.load(id)?;
        f(&mut rec);
        let p = self.record_path(id);
        let data = serde_json::to_vec_pretty(&rec).map_err(|source| StateError::Corrupt {
            path: p.clone(),
            source,
        })?;
        atomic_write_volatile(&p, &data).map_err(io_err(&p))?;
        Ok(rec)
    }

    /// Read-modify-write one record under the lock.
    pub fn update<F>(&self, id: &str, f: F) -> Result<ContainerRecord, StateError>
    where
        F: FnOnce(&mut ContainerRecord),
    {
        let _l = self.lock()?;
        let mut rec = self.load(id)?;
        f(&mut rec);
        self.save(&rec)?;
        Ok(rec)
    }

    /// Rename under the lock, keeping names unique.
    pub fn rename(&self, id: &str, new_name: &str) -> Result<(), StateError> {
        let _l = self.lock()?;
        if let Some(other) = self
            .list()?
            .into_iter()
            .find(|r| r.name == new_name && r.id != id)
        {
            return Err(StateError::NameInUse(
                new_name.to_string(),
                other.short_id().to_string(),
            ));
        }
        let mut rec = self.load(id)?;
        rec.name = new_name.to_string();
        self.save(&rec)
    }

    /// Delete a record and the container's directory. The record goes first (renamed
    /// away atomically), so a crash midway never leaves a half-readable record.
    pub fn remove(&self, id: &str) -> Result<(), StateError> {
        let _l = self.lock()?;
        let dir = self.dir(id);
        let tomb = self.containers_dir().join(format!(".removing-{id}"));
        match fs::rename(&dir, &tomb) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io_err(&dir)(e)),
        }
        remove_dir_all_if_exists(&tomb).map_err(io_err(&tomb))
    }

    /// Finish removals a crash interrupted.
    pub fn sweep(&self) {
        if let Ok(rd) = fs::read_dir(self.containers_dir()) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".removing-") {
                    let _ = remove_dir_all_if_exists(&e.path());
                }
            }
        }
    }

    /// Names in use (for generating a fresh one).
    pub fn names(&self) -> Result<Vec<String>, StateError> {
        Ok(self.list()?.into_iter().map(|r| r.name).collect())
    }

    /// Count of records per status (for `info`).
    pub fn counts(&self) -> Result<(usize, usize, usize, usize), StateError> {
        let all = self.list()?;
        let c = |s: Status| all.iter().filter(|r| r.state.status == s).count();
        Ok((
            all.len(),
            c(Status::Running),
            c(Status::Paused),
            c(Status::Exited),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SandboxSpec;
    use crate::state::ContainerState;

    fn rec(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.to_string(),
            name: name.to_string(),
            created: chrono::Utc::now(),
            image: "busybox".into(),
            image_id: "sha256:x".into(),
            layers: vec![],
            entrypoint: vec![],
            cmd: vec!["sh".into()],
            user: String::new(),
            spec: SandboxSpec::default(),
            auto_remove: false,
            restart_count: 0,
            state: ContainerState::default(),
            vm: None,
            ports: vec![],
            links: vec![],
        }
    }

    #[test]
    fn insert_resolve_rename_remove() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        s.insert(&rec("abcdef0123", "web")).unwrap();
        s.insert(&rec("abc9990000", "db")).unwrap();
        assert!(matches!(
            s.insert(&rec("ffff", "web")),
            Err(StateError::NameInUse(..))
        ));
        assert_eq!(s.resolve("web").unwrap(), "abcdef0123");
        assert_eq!(s.resolve("abcd").unwrap(), "abcdef0123");
        assert!(matches!(s.resolve("abc"), Err(StateError::Ambiguous(_))));
        assert!(matches!(s.resolve("zzz"), Err(StateError::NotFound(_))));
        assert!(s.rename("abcdef0123", "db").is_err());
        s.rename("abcdef0123", "front").unwrap();
        assert_eq!(s.resolve("front").unwrap(), "abcdef0123");
        s.remove("abcdef0123").unwrap();
        assert!(matches!(s.resolve("front"), Err(StateError::NotFound(_))));
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn concurrent_updates_do_not_lose_writes() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        s.insert(&rec("id1", "n1")).unwrap();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        s.update("id1", |r| r.restart_count += 1).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.load("id1").unwrap().restart_count, 80);
    }
}
