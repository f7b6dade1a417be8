//! Paths that come from users: [`TestPath::parse`] refuses what could escape or hide, and
//! [`confined`] resolves a path under a root only while it stays inside it (symlinks included).

use std::path::{Path, PathBuf};

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

/// `root/path` if, after resolving symlinks, it is still inside `root`.
pub(super) fn confined(root: &Path, path: &TestPath) -> Option<PathBuf> {
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
    fn support_files_are_underscored_names_or_dirs_and_conftest() {
        for support in [
            "_lib/eventual.py",
            "a/_sut.py",
            "a/__init__.py",
            "x/_data/p.json",
            "conftest.py",
            "a/conftest.py",
        ] {
            assert!(
                TestPath::parse(support).expect("valid").is_support(),
                "{support}"
            );
        }
        for test in ["a/test_x.py", "a/b_c.sh", "my_conftest.py", "a_/x.sh"] {
            assert!(
                !TestPath::parse(test).expect("valid").is_support(),
                "{test}"
            );
        }
    }
}
