//! How a test is launched: its command (by kind), its environment, and the run's directories —
//! built here, in one place, for tests, scripts and the recovery after a crash.

use std::{ffi::OsString, path::PathBuf};

use crate::{
    catalog::{Kind, TestPath},
    exec::Spec,
    model::Run,
};

use super::Harness;

impl Harness {
    /// Where a run's files are: `<data-dir>/runs/<id>`.
    pub(super) fn run_dir(&self, id: i64) -> PathBuf {
        self.inner.config.data_dir.join("runs").join(id.to_string())
    }

    /// The working directory of a run's tests and scripts.
    pub(super) fn work_dir(&self, id: i64) -> PathBuf {
        self.run_dir(id).join("work")
    }

    /// Where a run's log is.
    pub fn log_path(&self, id: i64) -> PathBuf {
        self.run_dir(id).join("log.txt")
    }

    /// Where pytest writes the JUnit XML of test `i` (0-based) of run `id`:
    /// `<run dir>/junit/<i+1>.xml` (numbered as the log's `start … (n/N)` lines).
    pub fn junit_path(&self, id: i64, i: usize) -> PathBuf {
        self.run_dir(id)
            .join("junit")
            .join(format!("{}.xml", i + 1))
    }

    /// How to run test `i` of `run`, or why it cannot be run.
    pub(super) fn spec_for(
        &self,
        run: &Run,
        i: usize,
        path: &str,
        work: &std::path::Path,
    ) -> Result<Spec, String> {
        let test_path = TestPath::parse(path).map_err(|e| format!("invalid test path: {e}"))?;
        let file = self
            .inner
            .catalog
            .resolve(&test_path)
            .ok_or_else(|| format!("{path} is no longer in the catalog"))?;
        let file = file.canonicalize().unwrap_or(file);
        let kind = Kind::of(&file).ok_or_else(|| format!("{path} is not a runnable test"))?;
        let argv: Vec<OsString> = match kind {
            Kind::Pytest => {
                self.check_pytest()?;
                // tee-sys: prints (announce lines included) reach the log live and are still in
                // pytest's failure report; no cache directory written into the catalog.
                let mut argv: Vec<OsString> = vec![
                    "python3".into(),
                    "-m".into(),
                    "pytest".into(),
                    "--capture=tee-sys".into(),
                    "-p".into(),
                    "no:cacheprovider".into(),
                ];
                // Its cases one by one for `GET /api/runs/{id}/junit.xml`, each with its own
                // captured output (pytest creates the directory).
                let mut junitxml = OsString::from("--junitxml=");
                junitxml.push(self.junit_path(run.id, i));
                argv.extend([junitxml, "-o".into(), "junit_logging=all".into()]);
                // The `eventual_sink`/`callback_key` fixtures, from the package on PYTHONPATH
                // (an installed copy's entry point has the same name, so it is loaded once).
                if self.inner.config.python_path.is_some() {
                    argv.extend(["-p".into(), "eventual.pytest_plugin".into()]);
                }
                argv.push(file.into());
                argv
            }
            Kind::Python => vec!["python3".into(), file.into()],
            Kind::Shell => vec!["bash".into(), file.into()],
            Kind::Executable => vec![file.into()],
        };
        let config = &self.inner.config;
        Ok(Spec {
            argv,
            cwd: work.to_owned(),
            env: self.base_env(run),
            timeout: config.test_timeout,
            kill_grace: config.kill_grace,
            tags: None,
        })
    }

    /// The variables every test and script of `run` gets.
    pub(crate) fn base_env(&self, run: &Run) -> Vec<(String, String)> {
        let config = &self.inner.config;
        let mut env = vec![
            ("EVENTUAL_RUN_ID".into(), run.id.to_string()),
            ("EVENTUAL_ENV_ID".into(), run.env_id.to_string()),
            ("EVENTUAL_USERNAME".into(), run.username.clone()),
            ("EVENTUAL_SINK_URL".into(), config.sink_url.clone()),
            ("EVENTUAL_KEY_PREFIX".into(), format!("run-{}.", run.id)),
            // With EVENTUAL_RUN_ID, how a restart after a crash recognises what the dead server
            // left running (see exec::kill_run_processes).
            ("EVENTUAL_DATA_DIR".into(), self.data_dir_marker()),
            // Python buffers stdout when it is a pipe; users expect to see lines live.
            ("PYTHONUNBUFFERED".into(), "1".into()),
            // Keep `__pycache__` out of the catalog.
            ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        ];
        // With --token the sink's reads need it, and a test must read its own callbacks. (Not a
        // narrower credential: tests run as the server's user, who can read its environment
        // anyway; the token is never written to a log.)
        if let Some(token) = &config.token {
            env.push(("EVENTUAL_TOKEN".into(), token.clone()));
        }
        // For every Python test, uploads included: the `eventual` package (`import eventual`),
        // then the sample tests' own helpers (`_lib`: `import demo`), then the server's own.
        let lib = config
            .sample_tests
            .as_ref()
            .map(|d| d.join("_lib"))
            .filter(|d| d.is_dir())
            .and_then(|d| d.canonicalize().ok());
        let inherited = std::env::var_os("PYTHONPATH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let dirs: Vec<PathBuf> = [config.python_path.clone(), lib, inherited]
            .into_iter()
            .flatten()
            .collect();
        if !dirs.is_empty() {
            let path = dirs
                .iter()
                .map(|d| d.to_string_lossy())
                .collect::<Vec<_>>()
                .join(":");
            env.push(("PYTHONPATH".to_owned(), path));
        }
        env
    }

    /// This server's data directory as its tests and scripts see it (`EVENTUAL_DATA_DIR`).
    pub(super) fn data_dir_marker(&self) -> String {
        let dir = &self.inner.config.data_dir;
        dir.canonicalize()
            .unwrap_or_else(|_| dir.clone())
            .display()
            .to_string()
    }

    pub(super) fn check_pytest(&self) -> Result<(), String> {
        if self.inner.pytest_ok.get().is_some() {
            return Ok(());
        }
        let ok = std::process::Command::new("python3")
            .args(["-c", "import pytest"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|_| "python3 is not installed or not on PATH: install Python 3 (e.g. `apt-get install python3`)".to_owned())?
            .success();
        if !ok {
            return Err("pytest is not installed for python3: install it with `python3 -m pip install pytest`".into());
        }
        let _ = self.inner.pytest_ok.set(());
        Ok(())
    }
}
