//! What the catalog holds, as `GET /api/tests` lists it: tests (with their tags), support files
//! and configurations, found by walking both roots (uploads shadow bundled files).

use std::{fs, path::Path};

use serde::Serialize;

use super::{CONFIG_FILE, Catalog, Kind, TestPath};

/// A test as `GET /api/tests` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
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

/// A directory's `eventual.toml`, as `GET /api/tests` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
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

impl Catalog {
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
