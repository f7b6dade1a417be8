//! How a test file is executed, by its name (and executable bit).

use std::{fs, path::Path};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_naming_rules() {
        assert_eq!(Kind::of(Path::new("a/test_x.py")), Some(Kind::Pytest));
        assert_eq!(Kind::of(Path::new("a/x_test.py")), Some(Kind::Pytest));
        assert_eq!(Kind::of(Path::new("a/helper.py")), Some(Kind::Python));
        assert_eq!(Kind::of(Path::new("a/run.sh")), Some(Kind::Shell));
        assert_eq!(Kind::of(Path::new("a/readme.txt")), None);
    }
}
