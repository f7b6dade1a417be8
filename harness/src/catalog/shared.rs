//! Uploads shared through the cluster's database (cluster mode): an upload or a delete on any
//! node is written to the database first, then every node's [`Mirror`] brings its local
//! uploads directory in line, through the same [`Catalog::upload`] / [`Catalog::delete`] as a
//! local upload — the same path checks, the same write-then-rename, the same refusal of links.
//!
//! A mirror compares every row's version with what it applied last, rather than reading "what
//! changed since version N": versions come from a sequence and commit out of order, so a cursor
//! could step over a change that commits late. A catalog is hundreds of rows, not millions: the
//! comparison is one small query, and contents are fetched only for what changed.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use sink::Unavailable;

use super::{Catalog, DeleteError, TestPath, UploadError};

/// The uploads in the database behind `pool`.
#[derive(Debug)]
pub(crate) struct SharedUploads {
    pool: Pool,
}

/// Why a mirror could not apply the database's uploads.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MirrorError {
    /// The database could not answer.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// A stored upload was refused locally (a path that no longer validates, a link planted in
    /// the local uploads directory, a full disk).
    #[error("failed to mirror the upload {path}: {why}")]
    Apply {
        /// Its path.
        path: String,
        /// What refused it.
        why: String,
    },
}

impl SharedUploads {
    /// Uploads in the database behind `pool` (migrated by [`crate::database::open`]).
    pub(crate) fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Stores (or replaces) the upload at `path`.
    pub(crate) async fn put(&self, path: &TestPath, contents: &[u8]) -> Result<(), Unavailable> {
        self.pool
            .get()
            .await?
            .execute(
                "INSERT INTO uploads (path, contents) VALUES ($1, $2)
                 ON CONFLICT (path) DO UPDATE SET contents = $2, version = nextval('upload_versions')",
                &[&path.as_str(), &contents],
            )
            .await?;
        Ok(())
    }

    /// Deletes the upload at `path`; false if there was none.
    pub(crate) async fn delete(&self, path: &TestPath) -> Result<bool, Unavailable> {
        Ok(self
            .pool
            .get()
            .await?
            .execute(
                "UPDATE uploads SET contents = NULL, version = nextval('upload_versions')
                 WHERE path = $1 AND contents IS NOT NULL",
                &[&path.as_str()],
            )
            .await?
            == 1)
    }
}

/// One node's copy of the shared uploads in its local catalog.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    /// The version of each path this mirror applied last.
    applied: HashMap<String, i64>,
}

impl Mirror {
    /// Brings `catalog`'s uploads in line with the database: writes what was uploaded or
    /// replaced, deletes what was deleted. Answers how many paths changed.
    pub(crate) async fn sync(
        &mut self,
        shared: &SharedUploads,
        catalog: &Catalog,
    ) -> Result<usize, MirrorError> {
        let client = shared.pool.get().await.map_err(Unavailable::from)?;
        let versions = client
            .query("SELECT path, version FROM uploads", &[])
            .await
            .map_err(Unavailable::from)?;
        let stale: Vec<String> = versions
            .iter()
            .filter(|r| self.applied.get(r.get::<_, &str>(0)) != Some(&r.get(1)))
            .map(|r| r.get(0))
            .collect();
        if stale.is_empty() {
            return Ok(0);
        }
        let rows = client
            .query(
                "SELECT path, contents, version FROM uploads WHERE path = ANY($1)",
                &[&stale],
            )
            .await
            .map_err(Unavailable::from)?;
        for row in &rows {
            let raw: &str = row.get(0);
            let contents: Option<&[u8]> = row.get(1);
            let failed = |why: String| MirrorError::Apply {
                path: raw.to_owned(),
                why,
            };
            let path = TestPath::parse(raw).map_err(failed)?;
            match contents {
                Some(bytes) => {
                    let (dir, name) = path
                        .as_str()
                        .rsplit_once('/')
                        .unwrap_or(("", path.as_str()));
                    catalog
                        .upload(dir, name, bytes, true)
                        .map_err(|e: UploadError| failed(e.to_string()))?;
                }
                None => match catalog.delete(&path) {
                    Ok(()) | Err(DeleteError::NotFound(_) | DeleteError::Bundled(_)) => {}
                    Err(e) => return Err(failed(e.to_string())),
                },
            }
            self.applied.insert(raw.to_owned(), row.get(2));
        }
        Ok(rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fresh_database;

    fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let catalog = Catalog::new(None, dir.path().join("tests")).expect("catalog");
        (dir, catalog)
    }

    fn path(p: &str) -> TestPath {
        TestPath::parse(p).expect("valid")
    }

    /// An upload through node a runs on node b: b's mirror writes it, a replacement replaces
    /// it, a delete removes it; a sync with nothing new changes nothing.
    #[tokio::test]
    async fn an_upload_on_one_node_reaches_every_nodes_catalog_and_so_does_its_deletion() {
        let Some(url) = fresh_database().await else {
            return;
        };
        let shared_a = SharedUploads::new(crate::database::open(&url).await.expect("pool"));
        let shared_b = SharedUploads::new(crate::database::open(&url).await.expect("pool"));
        let (_keep, b) = catalog();
        let mut mirror = Mirror::default();

        shared_a
            .put(&path("smoke/deep/test_up.py"), b"def test_up(): pass\n")
            .await
            .expect("put");
        shared_a
            .put(&path("_lib/helper.py"), b"X = 1\n")
            .await
            .expect("put");
        assert_eq!(mirror.sync(&shared_b, &b).await.expect("sync"), 2);
        let file = b
            .resolve(&path("smoke/deep/test_up.py"))
            .expect("b has the test");
        assert_eq!(
            std::fs::read(&file).expect("read"),
            b"def test_up(): pass\n"
        );
        assert!(b.resolve_file(&path("_lib/helper.py")).is_some());
        assert_eq!(
            mirror.sync(&shared_b, &b).await.expect("sync"),
            0,
            "nothing new"
        );

        shared_a
            .put(&path("smoke/deep/test_up.py"), b"def test_up(): assert 1\n")
            .await
            .expect("put");
        assert_eq!(mirror.sync(&shared_b, &b).await.expect("sync"), 1);
        assert_eq!(
            std::fs::read(&file).expect("read"),
            b"def test_up(): assert 1\n"
        );

        assert!(
            shared_b
                .delete(&path("smoke/deep/test_up.py"))
                .await
                .expect("delete")
        );
        assert!(
            !shared_a
                .delete(&path("smoke/deep/test_up.py"))
                .await
                .expect("delete"),
            "gone"
        );
        assert_eq!(mirror.sync(&shared_b, &b).await.expect("sync"), 1);
        assert!(
            b.resolve(&path("smoke/deep/test_up.py")).is_none(),
            "deleted on b too"
        );
    }

    /// A link planted in a node's local uploads directory (any test can plant one) does not
    /// let a mirrored upload write outside it: the mirror refuses, saying which upload.
    #[tokio::test]
    async fn a_mirror_does_not_follow_a_link_planted_in_the_local_uploads() {
        let Some(url) = fresh_database().await else {
            return;
        };
        let shared = SharedUploads::new(crate::database::open(&url).await.expect("pool"));
        let (dir, b) = catalog();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("tests/esc")).expect("link");
        shared
            .put(&path("esc/test_x.sh"), b"true\n")
            .await
            .expect("put");
        let refused = Mirror::default()
            .sync(&shared, &b)
            .await
            .expect_err("refused");
        assert!(refused.to_string().contains("esc/test_x.sh"), "{refused}");
        assert!(
            std::fs::read_dir(&elsewhere).expect("ls").next().is_none(),
            "nothing written there"
        );
    }
}
