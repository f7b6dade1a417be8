//! The sample tests that ship inside the binary.
//!
//! `sample-tests/` is embedded at build time and written out under the data directory when the
//! server starts without `--sample-tests`, so an installed `eventual serve` shows the samples
//! wherever it is started. The copy is rewritten at every start: it is the binary's, not the
//! user's (uploads live in `<data-dir>/tests` and shadow it).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use include_dir::{Dir, DirEntry, include_dir};

static BUNDLED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../sample-tests");

/// Where under the data directory the bundled samples are written.
pub const SAMPLES_DIR: &str = "sample-tests";

/// Writes the bundled samples to `<data_dir>/sample-tests`, replacing what an earlier start
/// wrote there, and returns that directory (absolute).
pub fn write_bundled(data_dir: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(data_dir)?;
    let target = data_dir.join(SAMPLES_DIR);
    // Written beside and swapped in, so the directory is never half there.
    let fresh = tempfile::Builder::new()
        .prefix(".sample-tests.")
        .tempdir_in(data_dir)?;
    write_dir(&BUNDLED, fresh.path())?;
    if target.exists() {
        let old = tempfile::Builder::new()
            .prefix(".sample-tests.old.")
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
        assert!(dir.join("_lib/eventual.py").is_file());
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
}
