//! The test catalog: the bundled `sample-tests/` tree plus an uploads tree under `--data-dir`,
//! seen as one tree of test paths (`smoke/test_status.py`). An upload at the same path as a
//! bundled test shadows it.
//!
//! Every path that comes from a user goes through [`TestPath::parse`]: relative, no `.`/`..`, no
//! hidden or empty components, no control characters or backslashes. Files are then opened only
//! under a root whose canonical form must still contain them, so a symlink cannot lead out.

use std::{
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use serde::Serialize;

/// How a test file is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `test_*.py` / `*_test.py`: `python3 -m pytest FILE`.
    Pytest,
    /// Any other `.py`: `python3 FILE`.
    Python,
    /// `.sh`: `bash FILE`.
    Shell,
    /// An executable file: run directly.
    Executable,
}

impl Kind {
    /// The kind of `path`, if it is a test at all.
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        if let Some(stem) = name.strip_suffix(".py") {
            return Some(if stem.starts_with("test_") || stem.ends_with("_test") {
                Self::Pytest
            } else {
                Self::Python
            });
        }
        if name.ends_with(".sh") {
            return Some(Self::Shell);
        }
        is_executable(path).then_some(Self::Executable)
    }

    /// Kinds that can be uploaded (uploads lose the executable bit, so only interpreted ones).
    pub fn uploadable(name: &str) -> bool {
        name.ends_with(".py") || name.ends_with(".sh")
    }
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(_: &Path) -> bool {
    false
}

/// A validated relative path inside the catalog (`dir/sub/test_x.py`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TestPath(String);

impl TestPath {
    /// Validates a user-supplied path; the error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("the path is empty".into());
        }
        if raw.starts_with('/') {
            return Err(format!(
                "{raw:?} is absolute: give a path relative to the catalog"
            ));
        }
        if raw.len() > 512 {
            return Err("the path is longer than 512 bytes".into());
        }
        let parts: Vec<&str> = raw.split('/').collect();
        if parts.len() > 16 {
            return Err("the path is more than 16 directories deep".into());
        }
        for part in &parts {
            check_component(part).map_err(|why| format!("{raw:?}: {why}"))?;
        }
        Ok(Self(parts.join("/")))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The directory part (`""` at the top).
    pub fn dir(&self) -> &str {
        self.0.rsplit_once('/').map_or("", |(d, _)| d)
    }

    /// Whether this is a support file rather than a test: its name or one of its directories
    /// starts with `_` (`_lib/eventual.py`, `_sut.py`, `__init__.py`), or it is pytest's
    /// `conftest.py`. Support files can be uploaded and read but are never run as tests.
    pub fn is_support(&self) -> bool {
        self.0.split('/').any(|part| part.starts_with('_'))
            || self.0.rsplit('/').next() == Some("conftest.py")
    }
}

fn check_component(part: &str) -> Result<(), String> {
    if part.is_empty() {
        return Err("it has an empty component (`//` or a trailing `/`)".into());
    }
    if part == "." || part == ".." {
        return Err("`.` and `..` are not allowed".into());
    }
    if part.starts_with('.') {
        return Err(format!("{part:?} is hidden (starts with `.`)"));
    }
    if part.chars().any(|c| c.is_control()) {
        return Err("it contains control characters".into());
    }
    if part.contains('\\') {
        return Err("it contains a backslash".into());
    }
    if part.len() > 255 {
        return Err("a component is longer than 255 bytes".into());
    }
    Ok(())
}

/// A test as `GET /api/tests` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TestInfo {
    /// Its ID: the path in the catalog.
    pub path: String,
    /// Its directory (`""` at the top).
    pub dir: String,
    /// Size in bytes.
    pub size: u64,
    /// Tags from a `eventual: tags=` header comment or a `preparation/`/`validation/` directory.
    pub tags: Vec<String>,
    /// Whether it was uploaded (rather than bundled).
    pub uploaded: bool,
}

/// A support file (helper module, SUT script, data) as `GET /api/tests` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SupportInfo {
    /// Its path in the catalog.
    pub path: String,
    /// Its directory (`""` at the top).
    pub dir: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether it was uploaded (rather than bundled).
    pub uploaded: bool,
}

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

/// The name of a directory's run configuration.
pub(crate) const CONFIG_FILE: &str = "eventual.toml";

/// A directory's `eventual.toml`, as `GET /api/tests` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConfigInfo {
    /// The directory it configures (`""` at the top).
    pub dir: String,
    /// Its port names.
    pub ports: Vec<String>,
    /// Its scripts' names.
    pub scripts: Vec<String>,
    /// Problems, if it does not validate (a bundled file edited by hand).
    pub problems: Vec<String>,
}

/// The two roots of the catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    bundled: Option<PathBuf>,
    uploads: PathBuf,
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

    /// Every test, sorted by path (uploads shadow bundled tests of the same path).
    pub fn list(&self) -> Vec<TestInfo> {
        self.listing().0
    }

    /// Every support file, sorted by path (uploads shadow bundled files of the same path).
    pub fn support(&self) -> Vec<SupportInfo> {
        self.listing().1
    }

    /// Tests and support files in one walk of both roots.
    pub fn listing(&self) -> (Vec<TestInfo>, Vec<SupportInfo>) {
        let mut found = Found::default();
        if let Some(bundled) = &self.bundled {
            walk(bundled, bundled, false, &mut found);
        }
        walk(&self.uploads, &self.uploads, true, &mut found);
        (
            found.tests.into_values().collect(),
            found.support.into_values().collect(),
        )
    }

    /// Every `eventual.toml` in the catalog (uploads shadow bundled ones), by directory.
    pub fn configs(&self) -> Vec<ConfigInfo> {
        let mut by_dir = std::collections::BTreeMap::new();
        for root in self.bundled.iter().chain(std::iter::once(&self.uploads)) {
            collect_configs(root, root, &mut by_dir);
        }
        by_dir
            .into_iter()
            .map(
                |(dir, text)| match crate::scripts::RunConfig::parse(&text) {
                    Ok(c) => ConfigInfo {
                        dir,
                        ports: c.ports,
                        scripts: c.scripts.into_keys().collect(),
                        problems: Vec::new(),
                    },
                    Err(problems) => ConfigInfo {
                        dir,
                        ports: Vec::new(),
                        scripts: Vec::new(),
                        problems,
                    },
                },
            )
            .collect()
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
        let parent = target.parent().unwrap_or(&self.uploads);
        fs::create_dir_all(parent)?;
        // The directories now exist; make sure none of them was a symlink leading out.
        if confined(&self.uploads, &path).is_none() {
            return Err(UploadError::InvalidPath(format!(
                "{} leads outside the uploads directory",
                path.as_str()
            )));
        }
        // Write to a temporary file and rename: a reader never sees half a test.
        let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
        tmp.write_all(contents)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&target).map_err(|e| e.error)?;
        Ok(path)
    }
}

/// `root/path` if, after resolving symlinks, it is still inside `root`.
fn confined(root: &Path, path: &TestPath) -> Option<PathBuf> {
    let root = root.canonicalize().ok()?;
    let joined = root.join(path.as_str());
    let parent = joined.parent()?.canonicalize().ok()?;
    if !parent.starts_with(&root) {
        return None;
    }
    let file = parent.join(joined.file_name()?);
    match file.canonicalize() {
        Ok(real) if !real.starts_with(&root) => None,
        _ => Some(file),
    }
}

/// What a walk of the roots finds, by path (a later root shadows an earlier one).
#[derive(Default)]
struct Found {
    tests: std::collections::BTreeMap<String, TestInfo>,
    support: std::collections::BTreeMap<String, SupportInfo>,
}

fn walk(root: &Path, dir: &Path, uploaded: bool, out: &mut Found) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // Hidden files, Python's byte-code caches and the configuration (listed as `configs`).
        if name.starts_with('.')
            || name == "__pycache__"
            || name.ends_with(".pyc")
            || name == CONFIG_FILE
        {
            continue;
        }
        let path = entry.path();
        // Symlinks are followed only when they stay inside the root.
        let Ok(real) = path.canonicalize() else {
            continue;
        };
        let Ok(real_root) = root.canonicalize() else {
            continue;
        };
        if !real.starts_with(&real_root) {
            continue;
        }
        if real.is_dir() {
            walk(root, &path, uploaded, out);
            continue;
        }
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let Some(rel) = rel.to_str().map(|r| r.replace('\\', "/")) else {
            continue;
        };
        let Ok(test_path) = TestPath::parse(&rel) else {
            continue;
        };
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if test_path.is_support() {
            out.support.insert(
                rel.clone(),
                SupportInfo {
                    dir: test_path.dir().to_owned(),
                    path: rel,
                    size,
                    uploaded,
                },
            );
        } else if Kind::of(&path).is_some() {
            out.tests.insert(
                rel.clone(),
                TestInfo {
                    dir: test_path.dir().to_owned(),
                    tags: tags_of(&path, &test_path),
                    path: rel,
                    size,
                    uploaded,
                },
            );
        }
    }
}

fn collect_configs(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            collect_configs(root, &path, out);
        } else if name == CONFIG_FILE {
            if let (Ok(text), Ok(rel)) = (fs::read_to_string(&path), dir.strip_prefix(root)) {
                out.insert(rel.to_string_lossy().into_owned(), text);
            }
        }
    }
}

/// Tags from a header comment in the first 20 lines (`# eventual: tags=a,b` or `// …`) and
/// from `preparation/` or `validation/` directories on the path.
pub(crate) fn tags_of(file: &Path, path: &TestPath) -> Vec<String> {
    let mut tags = Vec::new();
    if let Ok(text) = fs::read(file) {
        let head = String::from_utf8_lossy(&text[..text.len().min(8192)]);
        for line in head.lines().take(20) {
            let line = line.trim_start();
            let comment = line
                .strip_prefix('#')
                .or_else(|| line.strip_prefix("//"))
                .map(str::trim);
            if let Some(list) = comment
                .and_then(|c| c.strip_prefix("eventual:"))
                .map(str::trim)
                .and_then(|c| c.strip_prefix("tags="))
            {
                tags.extend(
                    list.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(String::from),
                );
            }
        }
    }
    for dir in path.as_str().split('/').rev().skip(1) {
        if dir == "preparation" || dir == "validation" {
            tags.push(dir.to_owned());
        }
    }
    tags.sort();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_escape_or_hide_are_refused_with_a_reason() {
        for bad in [
            "",
            "/etc/passwd",
            "../x.sh",
            "a/../../x.sh",
            "a//b.sh",
            ".hidden.sh",
            "a/.git/x.sh",
            "a/b\u{7}.sh",
            "a\\b.sh",
            "a/",
        ] {
            assert!(TestPath::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let ok = TestPath::parse("smoke/deep/test_x.py").expect("valid");
        assert_eq!(ok.dir(), "smoke/deep");
    }

    #[test]
    fn kinds_follow_the_naming_rules() {
        assert_eq!(Kind::of(Path::new("a/test_x.py")), Some(Kind::Pytest));
        assert_eq!(Kind::of(Path::new("a/x_test.py")), Some(Kind::Pytest));
        assert_eq!(Kind::of(Path::new("a/helper.py")), Some(Kind::Python));
        assert_eq!(Kind::of(Path::new("a/run.sh")), Some(Kind::Shell));
        assert_eq!(Kind::of(Path::new("a/readme.txt")), None);
    }

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
}
