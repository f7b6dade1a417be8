//! Small named definitions that tell the sink how to behave — stubs (`/stubs/{id}`) and
//! verifiers (`/verifiers/{id}`) — kept in memory and, with `--data-dir`, in one JSON file each
//! kind, so a restart keeps them; in cluster mode (`--database`) in one row each kind of the
//! cluster's database, so every node answers with the same set.
//!
//! They change rarely (a test sets a few) and are read on every callback, so reads take a shared
//! lock on an in-memory map and a change rewrites the whole file: written beside it, fsync'd and
//! renamed over it (then the directory fsync'd), so the file on disk is always either the old
//! set or the new one, never half of either. A change is answered only once it is on disk, the
//! same promise as a callback under `--fsync always`. Files are created mode 0600 (verifiers hold
//! secrets).
//!
//! In cluster mode a change is a transaction on the kind's row (`SELECT … FOR UPDATE`, applied
//! to the set the database holds, written back with its version bumped, a `NOTIFY` to the
//! other nodes), answered once committed; each node keeps a copy in memory for its callbacks and
//! reads the row again when told, when its listener reconnects and every re-check interval.

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
    /// Where they persist.
    persist: Persist,
    /// Serialises writers so that files are written in the order the map changed (the map lock
    /// itself is never held across the file write).
    write: Arc<tokio::sync::Mutex<()>>,
    /// Whether the map is empty, kept with it under its write lock: every callback asks, and a
    /// sink without stubs or verifiers then takes no lock to find out.
    empty: Arc<AtomicBool>,
}

/// Where a set of definitions persists.
#[derive(Debug, Clone)]
enum Persist {
    /// Nowhere: memory only.
    Memory,
    /// `<data-dir>/<name>.json`.
    File(Arc<PathBuf>),
    /// A row of the cluster's `definitions` table.
    Database(Arc<InDatabase>),
}

/// A kind's row in the cluster's database.
#[derive(Debug)]
struct InDatabase {
    pool: deadpool_postgres::Pool,
    kind: &'static str,
    /// The row's version this node's copy holds.
    version: std::sync::atomic::AtomicI64,
}

impl<T> Clone for Definitions<T> {
    fn clone(&self) -> Self {
        Self {
            map: Arc::clone(&self.map),
            persist: self.persist.clone(),
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
    /// The cluster's database could not take or give the definitions.
    #[error("{0}")]
    Database(#[from] crate::postgres::Unavailable),
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
            persist: Persist::Memory,
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
            persist: Persist::File(Arc::new(path)),
            write: Arc::default(),
        })
    }

    /// The definitions of `kind` in the cluster's database behind `pool` (its row made if new).
    pub(crate) async fn in_database(
        pool: deadpool_postgres::Pool,
        kind: &'static str,
    ) -> Result<Self, DefinitionsError> {
        let client = pool
            .get()
            .await
            .map_err(crate::postgres::Unavailable::from)?;
        client
            .execute(
                "INSERT INTO definitions (kind) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&kind],
            )
            .await
            .map_err(crate::postgres::Unavailable::from)?;
        drop(client);
        let defs = Self {
            map: Arc::default(),
            persist: Persist::Database(Arc::new(InDatabase {
                pool,
                kind,
                version: std::sync::atomic::AtomicI64::new(-1),
            })),
            write: Arc::default(),
            empty: Arc::new(AtomicBool::new(true)),
        };
        defs.reload().await?;
        Ok(defs)
    }

    /// Cluster mode: reads the row again if its version moved past this node's copy (another
    /// node changed the set). Nothing to do elsewhere.
    pub(crate) async fn reload(&self) -> Result<(), DefinitionsError> {
        let Persist::Database(db) = &self.persist else {
            return Ok(());
        };
        let _writer = self.write.lock().await;
        let client = db
            .pool
            .get()
            .await
            .map_err(crate::postgres::Unavailable::from)?;
        let row = client
            .query_one(
                "SELECT version, doc FROM definitions WHERE kind = $1",
                &[&db.kind],
            )
            .await
            .map_err(crate::postgres::Unavailable::from)?;
        let version: i64 = row.get(0);
        if version == db.version.load(Ordering::Acquire) {
            return Ok(());
        }
        let map = parse_doc(db.kind, row.get(1))?;
        let mut current = self.map.write();
        self.empty.store(map.is_empty(), Ordering::Release);
        *current = map;
        db.version.store(version, Ordering::Release);
        Ok(())
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
        if let Persist::Database(db) = &self.persist {
            return self.change_in_database(db, f).await;
        }
        let (before, after, answer) = {
            let mut map = self.map.write();
            let before = map.clone();
            let answer = f(&mut map);
            self.empty.store(map.is_empty(), Ordering::Release);
            (before, map.clone(), answer)
        };
        let Persist::File(path) = self.persist.clone() else {
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

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Definitions<T> {
    /// Cluster mode's change (the caller holds the writer lock): applied to the set the database
    /// holds, under its row lock, written back with the version bumped and the other nodes told
    /// — then this node's copy is that set.
    async fn change_in_database<R>(
        &self,
        db: &InDatabase,
        f: impl FnOnce(&mut BTreeMap<String, T>) -> R,
    ) -> Result<R, DefinitionsError> {
        use crate::postgres::Unavailable;
        let mut client = db.pool.get().await.map_err(Unavailable::from)?;
        let tx = client.transaction().await.map_err(Unavailable::from)?;
        let row = tx
            .query_one(
                "SELECT doc FROM definitions WHERE kind = $1 FOR UPDATE",
                &[&db.kind],
            )
            .await
            .map_err(Unavailable::from)?;
        let mut map = parse_doc(db.kind, row.get(0))?;
        let answer = f(&mut map);
        let doc = serde_json::to_string(&map).map_err(|e| {
            DefinitionsError::Database(Unavailable(format!(
                "the {} cannot be encoded: {e}",
                db.kind
            )))
        })?;
        let version: i64 = tx
            .query_one(
                "UPDATE definitions SET doc = $2, version = version + 1 WHERE kind = $1 RETURNING version",
                &[&db.kind, &doc],
            )
            .await
            .map_err(Unavailable::from)?
            .get(0);
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[
                &crate::postgres::CHANNEL,
                &crate::postgres::DEFINITIONS_CHANGED,
            ],
        )
        .await
        .map_err(Unavailable::from)?;
        tx.commit().await.map_err(Unavailable::from)?;
        let mut current = self.map.write();
        self.empty.store(map.is_empty(), Ordering::Release);
        *current = map;
        db.version.store(version, Ordering::Release);
        Ok(answer)
    }
}

/// A kind's row as this build reads it.
fn parse_doc<T: DeserializeOwned>(
    kind: &str,
    doc: &str,
) -> Result<BTreeMap<String, T>, DefinitionsError> {
    serde_json::from_str(doc).map_err(|e| {
        DefinitionsError::Database(crate::postgres::Unavailable(format!(
            "the {kind} in the database are not what this build reads ({e}): is another version of eventual writing them?"
        )))
    })
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
