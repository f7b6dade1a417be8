//! The sample tests and the `eventual` Python package that ship inside the binary.
//!
//! `sample-tests/` and `python/src/eventual/` are embedded at build time and written out under the
//! data directory when the server starts (the samples unless `--sample-tests` names others; the
//! package always), so an installed `eventual serve` shows the samples, and its tests can
//! `import eventual`, wherever it is started. The copies are rewritten at every start: they are
//! the binary's, not the user's (uploads live in `<data-dir>/tests` and shadow the samples).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use include_dir::{Dir, DirEntry, include_dir};

static BUNDLED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../sample-tests");
static PYTHON_PACKAGE: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../python/src/eventual");

/// Where under the data directory the bundled samples are written.
pub const SAMPLES_DIR: &str = "sample-tests";
/// Where under the data directory the Python package is written (as `python/eventual/`): the
/// directory that goes on the tests' `PYTHONPATH`.
pub const PYTHON_DIR: &str = "python";

/// Writes the bundled samples to `<data_dir>/sample-tests`, replacing what an earlier start
/// wrote there, and returns that directory (absolute).
pub fn write_bundled(data_dir: &Path) -> io::Result<PathBuf> {
    write_out(data_dir, SAMPLES_DIR, |dir| write_dir(&BUNDLED, dir))
}

/// Writes the `eventual` Python package to `<data_dir>/python/eventual`, replacing what an earlier
/// start wrote there, and returns `<data_dir>/python` (absolute), the directory to import it from.
pub fn write_python_package(data_dir: &Path) -> io::Result<PathBuf> {
    write_out(data_dir, PYTHON_DIR, |dir| {
        let package = dir.join("eventual");
        fs::create_dir(&package)?;
        write_dir(&PYTHON_PACKAGE, &package)
    })
}

/// `<data_dir>/<name>`, filled by `fill` beside it and swapped in, so it is never half there.
fn write_out(
    data_dir: &Path,
    name: &str,
    fill: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<PathBuf> {
    fs::create_dir_all(data_dir)?;
    let target = data_dir.join(name);
    let fresh = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempdir_in(data_dir)?;
    fill(fresh.path())?;
    if target.exists() {
        let old = tempfile::Builder::new()
            .prefix(&format!(".{name}.old."))
            .tempdir_in(data_dir)?;
        fs::rename(&target, old.path().join("x"))?;
    }
    fs::rename(fresh.keep(), &target)?;
    target.canonicalize()
}

fn write_dir(dir: &Dir<'_>, root: &Path) -> io::Result<()> {
    for entry in dir.entries() {
        let path = root.join(entry.path());
        // A developer's local runs may have left caches in the source tree.
        if entry
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == "__pycache__" || n.starts_with('.') || n.ends_with(".pyc"))
        {
            continue;
        }
        match entry {
            DirEntry::Dir(d) => {
                fs::create_dir_all(&path)?;
                write_dir(d, root)?;
            }
            DirEntry::File(f) => fs::write(&path, f.contents())?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_samples_are_written_out_and_rewritten_at_each_start() {
        let data = tempfile::tempdir().expect("tempdir");
        let dir = write_bundled(data.path()).expect("written");
        assert!(dir.is_absolute());
        assert!(dir.join("smoke/hello.sh").is_file());
        assert!(dir.join("_lib/demo.py").is_file());
        assert!(dir.join("_lib/demo_sut.py").is_file());
        assert!(dir.join("with-services/eventual.toml").is_file());
        fs::write(dir.join("smoke/hello.sh"), "exit 1\n").expect("edit");
        fs::write(dir.join("stray.sh"), "exit 1\n").expect("stray");
        let again = write_bundled(data.path()).expect("rewritten");
        assert_eq!(again, dir);
        assert_eq!(
            fs::read(dir.join("smoke/hello.sh")).expect("read"),
            BUNDLED
                .get_file("smoke/hello.sh")
                .expect("bundled")
                .contents()
        );
        assert!(!dir.join("stray.sh").exists());
        let leftovers: Vec<_> = fs::read_dir(data.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, [std::ffi::OsString::from(SAMPLES_DIR)]);
    }

    #[test]
    fn the_python_package_is_written_out_importable_and_rewritten_at_each_start() {
        let data = tempfile::tempdir().expect("tempdir");
        let dir = write_python_package(data.path()).expect("written");
        assert_eq!(
            dir,
            data.path().canonicalize().expect("abs").join(PYTHON_DIR)
        );
        for file in ["__init__.py", "client.py", "pytest_plugin.py", "py.typed"] {
            assert!(dir.join("eventual").join(file).is_file(), "{file}");
        }
        fs::write(dir.join("eventual/stray.py"), "").expect("stray");
        let again = write_python_package(data.path()).expect("rewritten");
        assert_eq!(again, dir);
        assert!(!dir.join("eventual/stray.py").exists());
        let leftovers: Vec<_> = fs::read_dir(data.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, [std::ffi::OsString::from(PYTHON_DIR)]);
    }
}
