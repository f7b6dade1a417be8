//! Small named definitions that tell the sink how to behave — stubs (`/stubs/{id}`) and
//! verifiers (`/verifiers/{id}`) — kept in memory and, with `--data-dir`, in one JSON file each
//! kind, so a restart keeps them.
//!
//! They change rarely (a test sets a few) and are read on every callback, so reads take a shared
//! lock on an in-memory map and a change rewrites the whole file: written beside it, fsync'd and
//! renamed over it (then the directory fsync'd), so the file on disk is always either the old
//! set or the new one, never half of either. A change is answered only once it is on disk, the
//! same promise as a callback under `--fsync always`. Files are created mode 0600 (verifiers hold
//! secrets).

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Write as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use parking_lot::RwLock;
use serde::{Serialize, de::DeserializeOwned};

/// A set of definitions of one kind by id, persisted in `<data-dir>/<name>.json` when there is a
/// data directory. Cheap to clone (shared).
#[derive(Debug)]
pub(crate) struct Definitions<T> {
    /// The definitions by id, in id order (what `GET` lists).
    map: Arc<RwLock<BTreeMap<String, T>>>,
    /// The file they persist to; `None` keeps them in memory only.
    file: Option<Arc<PathBuf>>,
    /// Serialises writers so that files are written in the order the map changed (the map lock
    /// itself is never held across the file write).
    write: Arc<tokio::sync::Mutex<()>>,
    /// Whether the map is empty, kept with it under its write lock: every callback asks, and a
    /// sink without stubs or verifiers then takes no lock to find out.
    empty: Arc<AtomicBool>,
}

impl<T> Clone for Definitions<T> {
    fn clone(&self) -> Self {
        Self {
            map: Arc::clone(&self.map),
            file: self.file.clone(),
            write: Arc::clone(&self.write),
            empty: Arc::clone(&self.empty),
        }
    }
}

/// Failure to read or write a definitions file.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionsError {
    /// The file could not be read, written, synced or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not what this version wrote.
    #[error("{path} is not a valid definitions file ({source}); fix or remove it")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What did not parse.
        source: serde_json::Error,
    },
}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Definitions<T> {
    /// In memory only.
    pub(crate) fn in_memory() -> Self {
        Self {
            map: Arc::default(),
            file: None,
            write: Arc::default(),
            empty: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Loads `<dir>/<name>.json` (absent means none yet), and persists there from now on.
    pub(crate) fn open(dir: &Path, name: &str) -> Result<Self, DefinitionsError> {
        let path = dir.join(format!("{name}.json"));
        let map = match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| DefinitionsError::Corrupt {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(DefinitionsError::Io { path, source }),
        };
        Ok(Self {
            empty: Arc::new(AtomicBool::new(map.is_empty())),
            map: Arc::new(RwLock::new(map)),
            file: Some(Arc::new(path)),
            write: Arc::default(),
        })
    }

    /// Runs `f` on the definitions under a shared lock (never held across an `.await`).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&BTreeMap<String, T>) -> R) -> R {
        f(&self.map.read())
    }

    /// Whether there are none (no lock taken).
    pub(crate) fn is_empty(&self) -> bool {
        self.empty.load(Ordering::Acquire)
    }

    /// One definition by id.
    pub(crate) fn get(&self, id: &str) -> Option<T> {
        self.map.read().get(id).cloned()
    }

    /// Sets `id` to `value`; answers whether it replaced one. Resolves once it is on disk; when
    /// the file cannot be written the change is undone and the error answered.
    pub(crate) async fn put(&self, id: &str, value: T) -> Result<bool, DefinitionsError> {
        self.change(|map| map.insert(id.to_owned(), value).is_some())
            .await
    }

    /// Removes every definition `pick` selects; answers their ids. Persisted like [`put`](Self::put).
    pub(crate) async fn remove_where(
        &self,
        pick: impl Fn(&str, &T) -> bool,
    ) -> Result<Vec<String>, DefinitionsError> {
        self.change(|map| {
            let gone: Vec<String> = map
                .iter()
                .filter(|(id, value)| pick(id, value))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &gone {
                map.remove(id);
            }
            gone
        })
        .await
    }

    async fn change<R>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, T>) -> R,
    ) -> Result<R, DefinitionsError> {
        let _writer = self.write.lock().await;
        let (before, after, answer) = {
            let mut map = self.map.write();
            let before = map.clone();
            let answer = f(&mut map);
            self.empty.store(map.is_empty(), Ordering::Release);
            (before, map.clone(), answer)
        };
        let Some(path) = self.file.clone() else {
            return Ok(answer);
        };
        let written = tokio::task::spawn_blocking(move || write_replacing(&path, &after))
            .await
            .unwrap_or_else(|e| {
                Err(DefinitionsError::Io {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e),
                })
            });
        match written {
            Ok(()) => Ok(answer),
            Err(e) => {
                let mut map = self.map.write();
                self.empty.store(before.is_empty(), Ordering::Release);
                *map = before;
                Err(e)
            }
        }
    }
}

/// Writes `map` as JSON beside `path`, fsyncs it, renames it over `path` and fsyncs the directory.
fn write_replacing<T: Serialize>(
    path: &Path,
    map: &BTreeMap<String, T>,
) -> Result<(), DefinitionsError> {
    let io = |source| DefinitionsError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(map).map_err(|e| io(std::io::Error::other(e)))?;
    // Owner-only: verifiers.json holds secrets.
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn definitions_survive_a_reopen_and_a_removal_is_persisted_too() {
        let dir = tempfile::tempdir().unwrap();
        let defs = Definitions::<u32>::open(dir.path(), "stubs").unwrap();
        assert!(defs.is_empty());
        assert!(!defs.put("a", 1).await.unwrap());
        assert!(!defs.is_empty());
        assert!(defs.put("a", 2).await.unwrap(), "a second put replaces");
        defs.put("b", 3).await.unwrap();
        assert_eq!(defs.remove_where(|id, _| id == "b").await.unwrap(), ["b"]);

        let again = Definitions::<u32>::open(dir.path(), "stubs").unwrap();
        assert_eq!(again.get("a"), Some(2));
        assert_eq!(again.get("b"), None);
    }

    #[tokio::test]
    async fn a_failed_write_leaves_the_definitions_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let defs = Definitions::<u32>::open(dir.path(), "stubs").unwrap();
        defs.put("a", 1).await.unwrap();
        // The temporary file cannot be created where a directory of that name stands.
        fs::create_dir(dir.path().join("stubs.json.tmp")).unwrap();
        assert!(defs.remove_where(|_, _| true).await.is_err());
        assert!(
            !defs.is_empty(),
            "the undone removal left \"a\" and says so"
        );
        assert!(defs.put("b", 2).await.is_err());
        assert_eq!(defs.get("b"), None, "the change was undone");
        assert_eq!(defs.get("a"), Some(1));
    }

    #[test]
    fn a_corrupt_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("stubs.json"), b"{not json").unwrap();
        let err = Definitions::<u32>::open(dir.path(), "stubs").unwrap_err();
        assert!(err.to_string().contains("stubs.json"), "{err}");
    }
}
