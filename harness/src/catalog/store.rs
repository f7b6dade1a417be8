//! The two roots of the catalog, and what changes them: resolving a path to a file, uploads
//! (written whole, then renamed) and deletes.

use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use super::{CONFIG_FILE, Kind, TestPath, path::confined};

/// Why a catalog file could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Neither an upload nor a bundled file has this path.
    #[error("there is no uploaded file {0}: GET /api/tests lists the catalog")]
    NotFound(String),
    /// Only a bundled file has this path; those ship with the server.
    #[error(
        "{0} is a bundled sample that ships with the server; only uploads can be deleted \
         (upload a file at the same path to shadow it)"
    )]
    Bundled(String),
    /// The file system refused.
    #[error("failed to delete the upload: {0}")]
    Io(#[from] io::Error),
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Bad name or directory.
    #[error("{0}")]
    InvalidPath(String),
    /// Not a `.py` or `.sh`.
    #[error("{0}")]
    Unsupported(String),
    /// Already there and `overwrite` not set.
    #[error("{0}")]
    Exists(String),
    /// An `eventual.toml` that does not validate: every problem.
    #[error("{}", .0.join("; "))]
    InvalidConfig(Vec<String>),
    /// The file system refused.
    #[error("failed to store the upload: {0}")]
    Io(#[from] io::Error),
}

/// The two roots of the catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The bundled samples (or `--sample-tests`), if that directory exists.
    pub(super) bundled: Option<PathBuf>,
    /// `<data-dir>/tests`: uploads, shadowing bundled files of the same path.
    pub(super) uploads: PathBuf,
}

impl Catalog {
    /// A catalog over `bundled` (if it exists) and `uploads` (created if missing).
    pub fn new(bundled: Option<PathBuf>, uploads: PathBuf) -> io::Result<Self> {
        fs::create_dir_all(&uploads)?;
        Ok(Self {
            bundled: bundled.filter(|b| b.is_dir()),
            uploads,
        })
    }

    /// The configuration a run of `tests` uses: the `eventual.toml` of the deepest directory
    /// that contains all of them, if any (uploads first at each level).
    pub fn config_for(
        &self,
        tests: &[String],
    ) -> Option<(String, Result<crate::scripts::RunConfig, Vec<String>>)> {
        let dirs: Vec<Vec<&str>> = tests
            .iter()
            .map(|t| {
                let mut parts: Vec<&str> = t.split('/').collect();
                parts.pop();
                parts
            })
            .collect();
        let first = dirs.first()?;
        let common = (0..first.len())
            .take_while(|&i| dirs.iter().all(|d| d.get(i) == first.get(i)))
            .count();
        for depth in (0..=common).rev() {
            let dir = first[..depth].join("/");
            for root in std::iter::once(&self.uploads).chain(self.bundled.as_ref()) {
                let file = if dir.is_empty() {
                    root.join(CONFIG_FILE)
                } else {
                    root.join(&dir).join(CONFIG_FILE)
                };
                if let Ok(text) = fs::read_to_string(&file) {
                    return Some((dir, crate::scripts::RunConfig::parse(&text)));
                }
            }
        }
        None
    }

    /// The absolute directory of the `eventual.toml` that [`Catalog::config_for`] finds.
    pub fn config_dir(&self, tests: &[String]) -> Option<PathBuf> {
        let (dir, _) = self.config_for(tests)?;
        std::iter::once(&self.uploads)
            .chain(self.bundled.as_ref())
            .map(|root| {
                if dir.is_empty() {
                    root.clone()
                } else {
                    root.join(&dir)
                }
            })
            .find(|d| d.join(CONFIG_FILE).is_file())
            .and_then(|d| d.canonicalize().ok())
    }

    /// The file of a test, if it exists in either root (uploads first). Support files are not
    /// tests: see [`Catalog::resolve_file`].
    pub fn resolve(&self, path: &TestPath) -> Option<PathBuf> {
        if path.is_support() {
            return None;
        }
        std::iter::once(&self.uploads)
            .chain(self.bundled.as_ref())
            .find_map(|root| confined(root, path).filter(|p| p.is_file() && Kind::of(p).is_some()))
    }

    /// Any catalog file (test, support file or configuration), uploads first.
    pub fn resolve_file(&self, path: &TestPath) -> Option<PathBuf> {
        std::iter::once(&self.uploads)
            .chain(self.bundled.as_ref())
            .find_map(|root| confined(root, path).filter(|p| p.is_file()))
    }

    /// Deletes the upload at `path` (a bundled file of the same path shows again), then the
    /// upload directories it leaves empty.
    pub fn delete(&self, path: &TestPath) -> Result<(), DeleteError> {
        let Some(file) = confined(&self.uploads, path).filter(|p| p.is_file()) else {
            let bundled = self
                .bundled
                .as_ref()
                .and_then(|root| confined(root, path))
                .is_some_and(|p| p.is_file());
            return Err(if bundled {
                DeleteError::Bundled(path.as_str().to_owned())
            } else {
                DeleteError::NotFound(path.as_str().to_owned())
            });
        };
        fs::remove_file(&file)?;
        let root = self.uploads.canonicalize()?;
        let mut dir = file.parent();
        while let Some(d) = dir.filter(|d| *d != root && d.starts_with(&root)) {
            // Fails (and stops) at the first directory that still holds something.
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// Stores an upload at `dir/name`, creating `dir` as needed.
    pub fn upload(
        &self,
        dir: &str,
        name: &str,
        contents: &[u8],
        overwrite: bool,
    ) -> Result<TestPath, UploadError> {
        let name_ok = TestPath::parse(name).map_err(UploadError::InvalidPath)?;
        if name_ok.as_str().contains('/') {
            return Err(UploadError::InvalidPath(format!(
                "the file name {name:?} contains `/`: put directories in `dir`"
            )));
        }
        let is_config = name == CONFIG_FILE;
        if is_config {
            let text = std::str::from_utf8(contents).map_err(|_| {
                UploadError::InvalidConfig(vec!["eventual.toml is not UTF-8 text".into()])
            })?;
            crate::scripts::RunConfig::parse(text).map_err(UploadError::InvalidConfig)?;
        }
        if dir.starts_with('/') {
            return Err(UploadError::InvalidPath(format!(
                "the directory {dir:?} is absolute: give a directory relative to the catalog"
            )));
        }
        let dir = dir.trim_end_matches('/');
        let full = if dir.is_empty() {
            name.to_owned()
        } else {
            format!("{dir}/{name}")
        };
        let path = TestPath::parse(&full).map_err(UploadError::InvalidPath)?;
        if !is_config && !path.is_support() && !Kind::uploadable(name) {
            return Err(UploadError::Unsupported(format!(
                "{name:?} is not a test kind that can be uploaded: use a `.py` (pytest for \
                 test_*.py / *_test.py) or `.sh` file, or name it (or its directory) with a \
                 leading `_` to upload it as a support file"
            )));
        }
        let exists = if is_config {
            self.uploads.join(path.as_str()).exists()
        } else {
            self.resolve_file(&path).is_some()
        };
        if exists && !overwrite {
            return Err(UploadError::Exists(format!(
                "{} already exists: to replace it, upload again with overwrite=true (`eventual \
                 upload --overwrite`, or tick \"Replace if it exists\" in the web UI)",
                path.as_str()
            )));
        }
        let target = self.uploads.join(path.as_str());
        // Created one component at a time, refusing links: nothing is made outside the root,
        // whatever a test planted under it.
        let parent = create_dirs_inside(&self.uploads, path.dir())?;
        // Checked again once they exist (a link could have replaced one meanwhile).
        if confined(&self.uploads, &path).is_none() {
            return Err(UploadError::InvalidPath(format!(
                "{} leads outside the uploads directory",
                path.as_str()
            )));
        }
        // Write to a temporary file and rename: a reader never sees half a test.
        let mut tmp = tempfile::NamedTempFile::new_in(&parent)?;
        tmp.write_all(contents)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&target).map_err(|e| e.error)?;
        Ok(path)
    }
}

/// Creates `dir` (relative, already validated) under `root` one component at a time. A
/// component that is a symbolic link, or a file, is refused before anything below it is
/// created, so an upload can never create directories outside `root`.
fn create_dirs_inside(root: &Path, dir: &str) -> Result<PathBuf, UploadError> {
    let mut at = root.to_path_buf();
    let mut walked = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        at.push(part);
        if !walked.is_empty() {
            walked.push('/');
        }
        walked.push_str(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UploadError::InvalidPath(format!(
                    "{walked} is a symbolic link in the uploads directory and uploads do not follow \
                     links: upload into another directory (or delete the link)"
                )));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(UploadError::InvalidPath(format!(
                    "{walked} is a file, not a directory: choose another `dir`"
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&at) {
                Ok(()) => {}
                // Created meanwhile by a concurrent upload: checked on the next round.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir()) {
                        return Err(UploadError::InvalidPath(format!(
                            "{walked} changed while uploading: try again"
                        )));
                    }
                }
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_create_nested_dirs_refuse_duplicates_and_shadow_bundled_tests() {
        let bundled = tempfile::tempdir().expect("tempdir");
        let uploads = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(bundled.path().join("smoke")).expect("mkdir");
        fs::write(
            bundled.path().join("smoke/a.sh"),
            "# eventual: tags=quick, smoke\nexit 0\n",
        )
        .expect("write");
        let catalog =
            Catalog::new(Some(bundled.path().into()), uploads.path().into()).expect("catalog");
        let listed = catalog.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].tags, vec!["quick", "smoke"]);
        assert!(!listed[0].uploaded);

        let p = catalog
            .upload("new/deeper", "b.sh", b"exit 0\n", false)
            .expect("upload");
        assert_eq!(p.as_str(), "new/deeper/b.sh");
        assert!(matches!(
            catalog.upload("smoke", "a.sh", b"exit 1\n", false),
            Err(UploadError::Exists(_))
        ));
        catalog
            .upload("smoke", "a.sh", b"exit 1\n", true)
            .expect("overwrite");
        let a = catalog
            .list()
            .into_iter()
            .find(|t| t.path == "smoke/a.sh")
            .expect("listed");
        assert!(a.uploaded, "the upload shadows the bundled test");
        assert!(matches!(
            catalog.upload("x", "notes.txt", b"", false),
            Err(UploadError::Unsupported(_))
        ));
        assert!(matches!(
            catalog.upload("../up", "a.sh", b"", false),
            Err(UploadError::InvalidPath(_))
        ));
        assert!(matches!(
            catalog.upload("x", "a/b.sh", b"", false),
            Err(UploadError::InvalidPath(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_root_is_not_followed() {
        let outside = tempfile::tempdir().expect("tempdir");
        fs::write(outside.path().join("secret.sh"), "exit 0").expect("write");
        let uploads = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), uploads.path().join("link")).expect("symlink");
        let catalog = Catalog::new(None, uploads.path().into()).expect("catalog");
        assert!(catalog.list().is_empty());
        let path = TestPath::parse("link/secret.sh").expect("syntactically fine");
        assert_eq!(catalog.resolve(&path), None);
        assert!(catalog.upload("link", "x.sh", b"exit 0", false).is_err());
        assert!(!outside.path().join("x.sh").exists());
    }

    #[cfg(unix)]
    #[test]
    fn an_upload_through_a_planted_symlink_creates_nothing_outside_the_root() {
        let outside = tempfile::tempdir().expect("tempdir");
        let uploads = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), uploads.path().join("esc")).expect("symlink");
        let catalog = Catalog::new(None, uploads.path().into()).expect("catalog");
        let refused = catalog.upload("esc/newdir/deeper", "x.sh", b"exit 0", false);
        assert_eq!(
            fs::read_dir(outside.path()).expect("list").count(),
            0,
            "nothing was created outside the uploads root"
        );
        assert!(
            matches!(&refused, Err(UploadError::InvalidPath(m)) if m.contains("esc is a symbolic link")),
            "{refused:?}"
        );
        // A file where a directory should be is refused too, and ordinary nesting still works.
        fs::write(uploads.path().join("plain"), "x").expect("write");
        assert!(matches!(
            catalog.upload("plain/sub", "x.sh", b"exit 0", false),
            Err(UploadError::InvalidPath(_))
        ));
        catalog
            .upload("ok/nested/dir", "x.sh", b"exit 0", false)
            .expect("nested upload");
    }
}
