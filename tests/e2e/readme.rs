//! The README's tours, run as a user types them (in the spirit of cargo's doc tests), so the
//! README cannot drift from the code again.
//!
//! Every fenced ```` ```sh ```` block under a tour heading ([`TOURS`]) is extracted from `README.md`;
//! the blocks of one tour are concatenated, in order, into one script run by
//! `bash -euo pipefail` — a failing command fails the tour. The tours run one after another, top to
//! bottom, each in a new bash process, all in one fresh directory that looks like a fresh clone: a
//! temporary *symlink farm* of the repository's top-level entries (so `fixtures/demo_sut.py`,
//! `sample-tests/` and the default `./.eventual` resolve exactly as in a checkout, and the state the
//! tours create stays in the temporary directory), without the repository's `target/`.
//!
//! **The only substitution** is the bash function `cargo` defined in the preamble ([`PREAMBLE`]),
//! because a release build (fat LTO) takes minutes on CI:
//! - `cargo run --release -- ARGS` executes the debug binary cargo built for this test
//!   (`CARGO_BIN_EXE_eventual`) with ARGS (with `exec` when run in the background, so `kill %1`
//!   stops the server itself, as it does under the real cargo);
//! - `cargo install --path .` puts that binary on `PATH` as `eventual`;
//! - anything else fails the tour.
//!
//! `target/release/eventual` in the farm is a symlink to the same debug binary — what
//! `cargo run --release` leaves there in a real checkout — so the tours' own
//! `alias eventual=target/release/eventual` works unchanged. The preamble sets
//! `shopt -s expand_aliases` because non-interactive bash ignores aliases otherwise.
//!
//! Each bash runs in its own process group, killed at the end whatever happened. A tour must stop
//! what it started: ports 7700 and 7701 (fixed in the tours) must be free before each tour and
//! again when it has exited, or the test fails naming the port. The tours need `curl`, `python3` and
//! pytest (`scripts/test.sh` installs them).
//!
//! The other ```` ```sh ```` blocks are references, not steps ([`NOT_TOURS`] says why for each
//! heading); a new block under any other heading fails
//! [`every_sh_block_in_the_readme_is_a_tour_or_a_listed_reference`].

use std::{
    collections::BTreeMap,
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use tokio::process::Command;

/// The repository (the checkout under test).
const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// The debug binary cargo built for the tests, standing in for `cargo run --release`.
const EVENTUAL: &str = env!("CARGO_BIN_EXE_eventual");

/// Headings whose `sh` blocks are a tour, in README order.
const TOURS: &[&str] = &[
    "Five-minute tour of the sink",
    "Five-minute tour of the harness",
    "Services in a run: `eventual.toml`",
    "Testing an asynchronous system in five minutes",
];

/// Headings whose `sh` blocks are not run, and why.
const NOT_TOURS: &[(&str, &str)] = &[
    (
        "Running several nodes (cluster mode)",
        "installs PostgreSQL as root and starts three long-running nodes; sink/tests/cluster and tests/e2e/cluster.rs run nodes on a real PostgreSQL",
    ),
    (
        "Fault suite",
        "runs the whole suite, which `scripts/test.sh` runs",
    ),
    (
        "Scripted responses (stubs)",
        "examples against a running sink; the same requests are tested in sink/tests/api/stubs.rs",
    ),
    (
        "The two commands",
        "`serve` in the foreground and `scripts/test.sh`, the suite this test is part of",
    ),
    (
        "Web UI",
        "the browser tests, which need Chromium and npm; `scripts/test.sh` runs them",
    ),
    (
        "Command line for CI",
        "a synopsis with placeholders (`KEY`, `[--overwrite]`)",
    ),
    (
        "JUnit XML in CI",
        "the CI step a pipeline runs against its own server; tests/e2e/junit.rs runs `run --junit`",
    ),
    (
        "Prometheus metrics",
        "one `curl` against the reader's server; tests/e2e/metrics.rs and tests/metrics scrape real ones",
    ),
    (
        "Python package and pytest plugin",
        "`pip install` into the reader's Python; `scripts/test.sh` installs it into a fresh \
         virtualenv and runs its suite",
    ),
    (
        "Signature verification",
        "one `curl` with the reader's token; sink/tests/api/verifiers.rs drives every route",
    ),
    (
        "Watching many keys",
        "an endless stream against the reader's sink; sink/tests/api/watching.rs drives it",
    ),
    ("Benchmarks", "measurements that take minutes"),
];

/// The contract's folder beside the repository, which a cloner does not have. Spelled in two parts
/// so that `git grep` for it finds no file of the repository, this one included.
const SHARED_FOLDER: &[&str] = &[concat!("shared", "/"), concat!("..", "/shared")];

/// Ports the tours use; other tests listen on port 0.
const TOUR_PORTS: &[u16] = &[7700, 7701];

/// How long one tour may take (the slowest, with the Python samples, takes a few seconds).
const TOUR_TIMEOUT: Duration = Duration::from_secs(120);

/// Written before every tour: see the module docs.
const PREAMBLE: &str = r#"# --- preamble written by tests/e2e/readme.rs (the only substitution: `cargo`) ---
shopt -s expand_aliases
cargo() {
  if [ "$#" -ge 3 ] && [ "$1 $2 $3" = "run --release --" ]; then
    shift 3
    if [ "$BASHPID" != "$$" ]; then exec "$README_TOUR_EVENTUAL" "$@"; fi
    "$README_TOUR_EVENTUAL" "$@"
  elif [ "$*" = "install --path ." ]; then
    export PATH="$README_TOUR_CARGO_BIN:$PATH"
  else
    echo "readme test: a tour may only call 'cargo run --release -- ARGS' or 'cargo install --path .', not: cargo $*" >&2
    return 2
  fi
}
# --- the tour, verbatim from README.md ---
"#;

/// One fenced `sh` block and the heading it is under.
#[derive(Debug)]
struct ShBlock {
    heading: String,
    code: String,
}

/// Every fenced `sh` block of `markdown`, with the nearest heading above it.
fn sh_blocks(markdown: &str) -> Vec<ShBlock> {
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut fence: Option<(bool, String)> = None;
    for line in markdown.lines() {
        match &mut fence {
            Some((is_sh, code)) => {
                if line.trim_start().starts_with("```") {
                    if *is_sh {
                        blocks.push(ShBlock {
                            heading: heading.clone(),
                            code: std::mem::take(code),
                        });
                    }
                    fence = None;
                } else {
                    code.push_str(line);
                    code.push('\n');
                }
            }
            None => {
                if let Some(info) = line.trim_start().strip_prefix("```") {
                    fence = Some((info.trim() == "sh", String::new()));
                } else if line.starts_with('#') {
                    heading = line.trim_start_matches('#').trim().to_owned();
                }
            }
        }
    }
    blocks
}

fn readme() -> anyhow::Result<String> {
    fs::read_to_string(Path::new(REPO).join("README.md")).context("failed to read README.md")
}

/// The tours of the README: heading → its `sh` blocks joined in order.
fn tours(markdown: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
    let blocks = sh_blocks(markdown);
    TOURS
        .iter()
        .map(|&tour| {
            let code: Vec<&str> = blocks
                .iter()
                .filter(|b| b.heading == tour)
                .map(|b| b.code.as_str())
                .collect();
            ensure!(
                !code.is_empty(),
                "README.md has no ```sh block under the heading {tour:?}; rename the heading in \
                 tests/e2e/readme.rs (TOURS) if it changed"
            );
            Ok((tour, code.concat()))
        })
        .collect()
}

/// A directory that looks like a fresh clone: the repository's top-level entries as symlinks,
/// and `target/release/eventual` pointing at the debug binary.
fn symlink_farm(root: &Path) -> anyhow::Result<PathBuf> {
    let clone = root.join("clone");
    fs::create_dir(&clone)?;
    for entry in fs::read_dir(REPO)? {
        let name = entry?.file_name();
        if [".git", "target", ".eventual", "node_modules"].contains(&&*name.to_string_lossy()) {
            continue;
        }
        std::os::unix::fs::symlink(Path::new(REPO).join(&name), clone.join(&name))
            .with_context(|| format!("failed to link {name:?} into the farm"))?;
    }
    fs::create_dir_all(clone.join("target/release"))?;
    std::os::unix::fs::symlink(EVENTUAL, clone.join("target/release/eventual"))?;
    let cargo_bin = root.join("cargo-bin");
    fs::create_dir(&cargo_bin)?;
    std::os::unix::fs::symlink(EVENTUAL, cargo_bin.join("eventual"))?;
    Ok(clone)
}

/// Fails naming the port when one of the tours' ports is taken.
fn ensure_ports_free(when: &str) -> anyhow::Result<()> {
    for &port in TOUR_PORTS {
        if let Err(e) = TcpListener::bind(("127.0.0.1", port)) {
            bail!(
                "{when}, port {port} is in use ({e}): the README tours start servers on \
                 127.0.0.1:7700 and :7701. Stop whatever listens there (`ss -ltnp | grep {port}`) \
                 and run the test again"
            );
        }
    }
    Ok(())
}

/// What one tour did.
#[derive(Debug)]
struct TourOutput {
    stdout: String,
    stderr: String,
}

/// Kills a process group when dropped (the tour's bash and everything it started in the background).
#[derive(Debug)]
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // The group may already be empty; then kill(1) fails, which is fine.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs one tour in `clone` with `bash -euo pipefail` and returns its output; fails with the
/// script and its output if it exits non-zero, times out, or leaves a tour port in use.
async fn run_tour(
    root: &Path,
    clone: &Path,
    index: usize,
    name: &str,
    code: &str,
) -> anyhow::Result<TourOutput> {
    ensure_ports_free(&format!("before the tour {name:?}"))?;
    let script = root.join(format!("tour-{index}.sh"));
    fs::write(&script, format!("{PREAMBLE}{code}"))?;
    let stdout_path = root.join(format!("tour-{index}.stdout"));
    let stderr_path = root.join(format!("tour-{index}.stderr"));
    let mut cmd = Command::new("bash");
    cmd.arg("-euo")
        .arg("pipefail")
        .arg(&script)
        .current_dir(clone)
        .env("README_TOUR_EVENTUAL", EVENTUAL)
        .env("README_TOUR_CARGO_BIN", root.join("cargo-bin"))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path)?)
        .stderr(fs::File::create(&stderr_path)?)
        .process_group(0)
        .kill_on_drop(true);
    // A developer's shell must not change what the tours mean.
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        if key_str.starts_with("EVENTUAL_") || key_str == "DEMO_SUT_URL" {
            cmd.env_remove(&key);
        }
    }
    let started = Instant::now();
    let mut child = cmd.spawn().context("failed to start bash")?;
    let _group = KillGroup(child.id().context("bash has no pid")?);
    let status = tokio::time::timeout(TOUR_TIMEOUT, child.wait()).await;
    let elapsed = started.elapsed();
    // Checked before the group is killed: a server still running there is the tour's fault.
    let ports = ensure_ports_free(&format!("after the tour {name:?} exited"));
    let output = TourOutput {
        stdout: fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
    };
    let report = || {
        format!(
            "script ({}):\n{PREAMBLE}{code}\n--- stdout:\n{}\n--- stderr:\n{}",
            script.display(),
            output.stdout,
            output.stderr
        )
    };
    match status {
        Err(_) => bail!(
            "the tour {name:?} did not finish within {TOUR_TIMEOUT:?}\n{}",
            report()
        ),
        Ok(status) => {
            let status = status.context("failed to wait for bash")?;
            ensure!(
                status.success(),
                "the tour {name:?} failed ({status}) after {elapsed:?}\n{}",
                report()
            );
        }
    }
    if let Err(e) = ports {
        bail!(
            "{e}: each tour must stop the servers it starts\n{}",
            report()
        );
    }
    if std::env::var_os("TEST_LOG").is_some_and(|v| v == "1") {
        eprintln!("tour {name:?} passed in {elapsed:?}\n{}", report());
    }
    Ok(output)
}

/// The first JSON value in `text` that starts with `prefix`.
fn json_starting_with(text: &str, prefix: &str) -> anyhow::Result<Value> {
    let at = text
        .find(prefix)
        .with_context(|| format!("no {prefix:?} in the output:\n{text}"))?;
    let mut values = serde_json::Deserializer::from_str(&text[at..]).into_iter::<Value>();
    values
        .next()
        .context("nothing after the prefix")?
        .with_context(|| format!("the JSON at {prefix:?} does not parse"))
}

/// The record example the README shows under "A record looks like this".
fn readme_record_example(markdown: &str) -> anyhow::Result<Value> {
    let (_, after) = markdown
        .split_once("A record looks like this")
        .context("README.md no longer has \"A record looks like this\"")?;
    let (_, block) = after
        .split_once("```json\n")
        .context("no ```json block after \"A record looks like this\"")?;
    let (json, _) = block
        .split_once("```")
        .context("unterminated ```json block")?;
    serde_json::from_str(json).context("the README's example record is not JSON")
}

fn field_names(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_readme_tours_run_as_written_top_to_bottom() -> anyhow::Result<()> {
    let markdown = readme()?;
    let tours = tours(&markdown)?;
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let clone = symlink_farm(root.path())?;
    let mut outputs = BTreeMap::new();
    for (index, (name, code)) in tours.iter().enumerate() {
        let output = run_tour(root.path(), &clone, index + 1, name, code).await?;
        outputs.insert(*name, output);
    }

    // The sink tour: the record really holds the body as posted, and the README's example record
    // has the fields (in order), the size and the body of the real one.
    let sink = &outputs["Five-minute tour of the sink"].stdout;
    let record = json_starting_with(sink, r#"{"key":"job-42","seq":1,"#)?;
    ensure!(
        sink.contains(r#""size":31,"body":{"status":"done","total":10.50}"#),
        "the record should keep the 31-byte body exactly as posted:\n{sink}"
    );
    ensure!(
        sink.contains(r#"{"key":"job-43","seq":1}"#),
        "POST /callbacks should take the key from the body's request_id:\n{sink}"
    );
    let example = readme_record_example(&markdown)?;
    ensure!(
        field_names(&example) == field_names(&record),
        "the README's example record has the fields {:?}, the real one {:?}",
        field_names(&example),
        field_names(&record)
    );
    for field in ["size", "body", "method", "path", "content_type"] {
        ensure!(
            example[field] == record[field],
            "the README's example record says {field} = {}, the real one {}",
            example[field],
            record[field]
        );
    }

    // The harness tour: the uploaded test ran and the run passed.
    let harness = &outputs["Five-minute tour of the harness"].stdout;
    ensure!(
        harness.contains("out hello from ann on env 3") && harness.contains(r#""status":"passed""#),
        "the harness tour's run should pass with the uploaded test's line in its log:\n{harness}"
    );

    // The asynchronous-system tour: the misbehaving sample fails, and says so with exit 1 (the
    // passing runs are checked by `set -e`).
    let asynchronous = &outputs["Testing an asynchronous system in five minutes"];
    ensure!(
        asynchronous.stdout.contains("exit 1"),
        "the never-calls-back sample should exit 1:\n{}\n{}",
        asynchronous.stdout,
        asynchronous.stderr
    );
    Ok(())
}

#[test]
fn every_sh_block_in_the_readme_is_a_tour_or_a_listed_reference() -> anyhow::Result<()> {
    for block in sh_blocks(&readme()?) {
        ensure!(
            TOURS.contains(&block.heading.as_str())
                || NOT_TOURS.iter().any(|(h, _)| *h == block.heading),
            "README.md has a ```sh block under {:?}, which is neither a tour (run by \
             the_readme_tours_run_as_written_top_to_bottom) nor listed in NOT_TOURS in \
             tests/e2e/readme.rs; add the heading to one of them:\n{}",
            block.heading,
            block.code
        );
    }
    Ok(())
}
/// Text files of `docs/`, recursively (screenshots and other binary files are skipped).
fn docs_texts(dir: &Path, found: &mut Vec<(PathBuf, String)>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            docs_texts(&path, found)?;
        } else if let Ok(text) = fs::read_to_string(&path) {
            found.push((path, text));
        }
    }
    Ok(())
}

#[test]
fn the_readme_and_docs_stand_alone_without_a_shared_folder() -> anyhow::Result<()> {
    let mut texts = vec![(PathBuf::from("README.md"), readme()?)];
    docs_texts(&Path::new(REPO).join("docs"), &mut texts)?;
    for (path, text) in &texts {
        for (number, line) in text.lines().enumerate() {
            ensure!(
                !SHARED_FOLDER.iter().any(|s| line.contains(s)),
                "{}:{}: a cloner has only the repository, not the folder beside it; keep what this points at in the \
                 repository:\n{line}",
                path.display(),
                number + 1
            );
        }
        // Relative links must lead to files of the repository.
        let base = if path.starts_with(REPO) {
            path.parent()
                .context("a docs file has a folder")?
                .to_owned()
        } else {
            PathBuf::from(REPO)
        };
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            ensure!(
                base.join(target).exists(),
                "{} links to {target}, which does not exist",
                path.display()
            );
        }
    }
    Ok(())
}
