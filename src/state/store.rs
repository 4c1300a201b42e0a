//! Reading and writing container records.

use super::record::{ContainerRecord, Status};
use crate::util::fs::{atomic_write, atomic_write_volatile, remove_dir_all_if_exists, Lock};
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
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

/// The lock file a container's directory holds while it is being created and started
/// (see [`Creating`]).
pub const CREATING_LOCK: &str = "creating.lock";

/// A shared lock held from the moment a container's directory appears until its first
/// start is recorded (or `create` finished): by the creating CLI, and by the monitor it
/// forks, which inherits the same open file. When both are gone and the lock file is
/// still there, the creation was cut short (the CLI was killed), and the container is
/// discarded instead of staying half-made.
#[derive(Debug)]
pub struct Creating {
    file: fs::File,
}

impl Creating {
    fn take(path: &Path) -> Result<Creating, StateError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        // SAFETY: flock on an fd we own; no memory involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) } != 0 {
            return Err(io_err(path)(io::Error::last_os_error()));
        }
        Ok(Creating { file })
    }

    /// The descriptor holding the lock (a monitor keeps it open across fork).
    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Creation is over: the lock file goes (in the container's directory, which has
    /// moved in since the lock was taken).
    pub fn finish(self, container_dir: &Path) {
        let _ = fs::remove_file(container_dir.join(CREATING_LOCK));
        drop(self.file);
    }

    /// Adopt an inherited descriptor (in a forked monitor).
    ///
    /// # Safety
    /// `fd` must be a `Creating` descriptor this process owns and nothing else uses.
    pub unsafe fn from_fd(fd: i32) -> Creating {
        Creating {
            // SAFETY: ownership is transferred by the caller per this function's contract.
            file: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) },
        }
    }
}

/// A container whose record cannot be read (truncated, not JSON, unreadable).
#[derive(Debug, Clone, PartialEq)]
pub struct Damaged {
    pub id: String,
    pub reason: String,
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
    /// The container's directory must exist: a record is never written back into a
    /// container that was removed meanwhile.
    pub fn save(&self, rec: &ContainerRecord) -> Result<(), StateError> {
        let p = self.record_path(&rec.id);
        let data = serde_json::to_vec_pretty(rec).map_err(|source| StateError::Corrupt {
            path: p.clone(),
            source,
        })?;
        atomic_write(&p, &data).map_err(io_err(&p))
    }

    /// Every readable record, newest first. Damaged ones are left out (see `scan`).
    pub fn list(&self) -> Result<Vec<ContainerRecord>, StateError> {
        Ok(self.scan()?.0)
    }

    /// Every record, and apart from them the containers whose record cannot be read:
    /// one damaged record never hides the others. Entries that are not container
    /// directories (stray files, half-made ones) are skipped.
    pub fn scan(&self) -> Result<(Vec<ContainerRecord>, Vec<Damaged>), StateError> {
        let dir = self.containers_dir();
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            match self.load(&name) {
                Ok(r) => out.push(r),
                Err(StateError::NotFound(_)) => {}
                Err(e) => damaged.push(Damaged {
                    id: name,
                    reason: match e {
                        StateError::Corrupt { source, .. } => format!("not valid: {source}"),
                        StateError::Io { source, .. } => source.to_string(),
                        other => other.to_string(),
                    },
                }),
            }
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.created));
        damaged.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((out, damaged))
    }

    /// Resolve a name, full id or unique id prefix to an id. Containers with a damaged
    /// record are found by id (their name is in the record).
    pub fn resolve(&self, reference: &str) -> Result<String, StateError> {
        let (all, damaged) = self.scan()?;
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
        let matches: Vec<&str> = all
            .iter()
            .map(|r| r.id.as_str())
            .chain(damaged.iter().map(|d| d.id.as_str()))
            .filter(|id| !reference.is_empty() && id.starts_with(reference))
            .collect();
        match matches.len() {
            0 => Err(StateError::NotFound(reference.to_string())),
            1 => Ok(matches[0].to_string()),
            _ => Err(StateError::Ambiguous(reference.to_string())),
        }
    }

    /// Insert a new record with a fresh random name (chosen under the lock, so parallel
    /// creations never pick the same one). Returns the name.
    pub fn insert_named(
        &self,
        rec: &mut ContainerRecord,
    ) -> Result<(String, Creating), StateError> {
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
        let creating = self.create(rec)?;
        Ok((name, creating))
    }

    /// Insert a new record, failing if its name is taken. Takes the lock itself.
    pub fn insert(&self, rec: &ContainerRecord) -> Result<Creating, StateError> {
        let _l = self.lock()?;
        if let Some(other) = self.list()?.into_iter().find(|r| r.name == rec.name) {
            return Err(StateError::NameInUse(
                rec.name.clone(),
                other.short_id().to_string(),
            ));
        }
        self.create(rec)
    }

    /// Make a container's directory whole or not at all: record and creation lock are
    /// written in a staging directory named by our pid, which is renamed into place.
    /// Callers hold the store lock.
    fn create(&self, rec: &ContainerRecord) -> Result<Creating, StateError> {
        let stage = self
            .containers_dir()
            .join(format!(".new-{}-{}", std::process::id(), rec.id));
        let made = (|| -> Result<Creating, StateError> {
            fs::create_dir(&stage).map_err(io_err(&stage))?;
            let lock = Creating::take(&stage.join(CREATING_LOCK))?;
            let data = serde_json::to_vec_pretty(rec).map_err(|source| StateError::Corrupt {
                path: stage.join("config.json"),
                source,
            })?;
            let p = stage.join("config.json");
            atomic_write(&p, &data).map_err(io_err(&p))?;
            let dir = self.dir(&rec.id);
            fs::rename(&stage, &dir).map_err(io_err(&dir))?;
            Ok(lock)
        })();
        if made.is_err() {
            let _ = remove_dir_all_if_exists(&stage);
        }
        made
    }

    /// Whether `id` is a half-made container: its creation lock is still there and
    /// nobody (neither the creating CLI nor the monitor it started) holds it.
    pub fn abandoned(&self, id: &str) -> bool {
        use std::os::unix::fs::MetadataExt;
        let p = self.dir(id).join(CREATING_LOCK);
        let Ok(f) = fs::File::open(&p) else {
            return false;
        };
        // SAFETY: flock on an fd we own; no memory involved.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        // Got it: but if the creation finished meanwhile (the lock file unlinked just
        // after we opened it), the lock is free because nobody needs it any more.
        let still_there = match (f.metadata(), fs::metadata(&p)) {
            (Ok(ours), Ok(now)) => ours.nlink() > 0 && ours.ino() == now.ino(),
            _ => false,
        };
        rc == 0 && still_there
    }

    /// Remove `id` if it is still a half-made container (checked again under the store
    /// lock, so a creation finishing meanwhile keeps its container). Returns the record
    /// it had.
    pub fn remove_if_abandoned(&self, id: &str) -> Option<ContainerRecord> {
        let _l = self.lock().ok()?;
        let rec = self.load(id).ok()?;
        if rec.state.status != Status::Created || !self.abandoned(id) {
            return None;
        }
        let dir = self.dir(id);
        let tomb = self.containers_dir().join(format!(".removing-{id}"));
        fs::rename(&dir, &tomb).ok()?;
        let _ = remove_dir_all_if_exists(&tomb);
        Some(rec)
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

    /// Finish removals a crash interrupted, and drop creations whose creator died
    /// before renaming them in.
    pub fn sweep(&self) {
        if let Ok(rd) = fs::read_dir(self.containers_dir()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let dead_creator = name
                    .strip_prefix(".new-")
                    .and_then(|r| r.split('-').next())
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new("/proc").join(pid.to_string()).exists());
                if name.starts_with(".removing-") || dead_creator {
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

    fn rec(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord::for_test(id, name)
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
