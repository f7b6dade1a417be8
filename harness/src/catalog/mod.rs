//! The test catalog: the bundled `sample-tests/` tree plus an uploads tree under `--data-dir`,
//! seen as one tree of test paths (`smoke/test_status.py`). An upload at the same path as a
//! bundled test shadows it.
//!
//! Every path that comes from a user goes through [`TestPath::parse`]: relative, no `.`/`..`, no
//! hidden or empty components, no control characters or backslashes. Files are then opened only
//! under a root whose canonical form must still contain them, so a symlink cannot lead out.
//!
//! # Layout
//! - `path.rs` — [`TestPath`]: validated user paths; confinement under a root.
//! - `kind.rs` — [`Kind`]: how a file runs (pytest, python3, bash, executable).
//! - `listing.rs` — tests, support files and configurations as listed; tags.
//! - `store.rs` — [`Catalog`]: resolving, uploading, deleting.
//! - `shared.rs` — cluster mode: uploads in the database, mirrored into each node's catalog.

mod kind;
mod listing;
mod path;
mod shared;
mod store;

pub use kind::Kind;
pub(crate) use listing::tags_of;
pub use listing::{ConfigInfo, SupportInfo, TestInfo};
pub use path::TestPath;
pub(crate) use shared::{Mirror, SharedUploads};
pub(crate) use store::UploadError;
pub use store::{Catalog, DeleteError};

/// The name of a directory's run configuration.
pub(crate) const CONFIG_FILE: &str = "eventual.toml";
