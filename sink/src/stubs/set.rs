//! [`StubSet`]: the sink's stubs by id — persisted with `--data-dir` through
//! [`Definitions`](crate::definitions::Definitions) (`<data-dir>/stubs.json`) — which one answers
//! a key, and how many callbacks each has answered (in memory: counted since the sink started
//! or the stub was last put).

use std::{collections::HashMap, path::Path, sync::Arc};

use parking_lot::Mutex;

use super::{Plan, Stub, StubInfo};
use crate::definitions::{Definitions, DefinitionsError};

/// The stubs. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub(crate) struct StubSet {
    defs: Definitions<Arc<Stub>>,
    /// Callbacks answered, by stub id.
    hits: Arc<Mutex<HashMap<String, u64>>>,
}

impl StubSet {
    /// No stubs, none persisted.
    pub(crate) fn in_memory() -> Self {
        Self::with(Definitions::in_memory())
    }

    /// The stubs of `<dir>/stubs.json`, persisted there from now on.
    pub(crate) fn open(dir: &Path) -> Result<Self, DefinitionsError> {
        Definitions::open(dir, "stubs").map(Self::with)
    }

    /// The stubs of the cluster's database behind `pool` (cluster mode).
    pub(crate) async fn in_database(
        pool: deadpool_postgres::Pool,
    ) -> Result<Self, DefinitionsError> {
        Definitions::in_database(pool, "stubs")
            .await
            .map(Self::with)
    }

    /// Cluster mode: reads them again if another node changed them.
    pub(crate) async fn reload(&self) -> Result<(), DefinitionsError> {
        self.defs.reload().await
    }

    fn with(defs: Definitions<Arc<Stub>>) -> Self {
        Self {
            defs,
            hits: Arc::default(),
        }
    }

    /// The stub that answers `key`: its exact-key stub, else the longest prefix; between equals
    /// the smallest id.
    pub(crate) fn plan(&self, key: &str) -> Option<Plan> {
        // A sink without stubs takes no lock to find out.
        if self.defs.is_empty() {
            return None;
        }
        self.defs.read(|map| {
            let mut best: Option<(usize, &String, &Arc<Stub>)> = None;
            for (id, stub) in map {
                if let Some(rank) = stub.specificity(key) {
                    if best.is_none_or(|(top, _, _)| rank > top) {
                        best = Some((rank, id, stub));
                    }
                }
            }
            best.map(|(_, id, stub)| Plan {
                id: Arc::from(id.as_str()),
                stub: Arc::clone(stub),
            })
        })
    }

    /// Counts one callback answered by stub `id`.
    pub(crate) fn hit(&self, id: &str) {
        let mut hits = self.hits.lock();
        match hits.get_mut(id) {
            Some(n) => *n += 1,
            None => {
                hits.insert(id.to_owned(), 1);
            }
        }
    }

    /// Sets stub `id` (its hits start again from 0); answers whether it replaced one.
    pub(crate) async fn put(&self, id: &str, stub: Stub) -> Result<bool, DefinitionsError> {
        let replaced = self.defs.put(id, Arc::new(stub)).await;
        if replaced.is_ok() {
            self.hits.lock().remove(id);
        }
        replaced
    }

    /// Stub `id` with its hits.
    pub(crate) fn get(&self, id: &str) -> Option<StubInfo> {
        let stub = self.defs.get(id)?;
        Some(self.info(id, &stub))
    }

    /// Every stub, in id order.
    pub(crate) fn list(&self) -> Vec<StubInfo> {
        let all: Vec<(String, Arc<Stub>)> = self.defs.read(|map| {
            map.iter()
                .map(|(id, stub)| (id.clone(), Arc::clone(stub)))
                .collect()
        });
        all.iter().map(|(id, stub)| self.info(id, stub)).collect()
    }

    /// Removes the stubs `pick` selects; answers their ids.
    pub(crate) async fn remove_where(
        &self,
        pick: impl Fn(&str, &Stub) -> bool,
    ) -> Result<Vec<String>, DefinitionsError> {
        let gone = self.defs.remove_where(|id, stub| pick(id, stub)).await;
        if let Ok(ids) = &gone {
            let mut hits = self.hits.lock();
            for id in ids {
                hits.remove(id);
            }
        }
        gone
    }

    fn info(&self, id: &str, stub: &Stub) -> StubInfo {
        StubInfo {
            id: id.to_owned(),
            stub: stub.clone(),
            hits: self.hits.lock().get(id).copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stubs::StubResponse;

    #[tokio::test]
    async fn the_exact_key_wins_then_the_longest_prefix_then_the_smallest_id() {
        let set = StubSet::in_memory();
        assert!(set.plan("run-7.a").is_none());
        let ok = || [StubResponse::status(200)];
        set.put("b-short", Stub::for_prefix("run-", ok()))
            .await
            .unwrap();
        set.put("a-short", Stub::for_prefix("run-", ok()))
            .await
            .unwrap();
        set.put("long", Stub::for_prefix("run-7.", ok()))
            .await
            .unwrap();
        set.put("exact", Stub::for_key("run-7.a", ok()))
            .await
            .unwrap();
        let winner = |key: &str| set.plan(key).map(|p| p.id.to_string());
        assert_eq!(winner("run-7.a").as_deref(), Some("exact"));
        assert_eq!(winner("run-7.b").as_deref(), Some("long"));
        assert_eq!(winner("run-8").as_deref(), Some("a-short"));
        assert_eq!(winner("other"), None);
        set.remove_where(|_, s| s.is_under("run-7")).await.unwrap();
        assert_eq!(winner("run-7.a").as_deref(), Some("a-short"));
    }
}
