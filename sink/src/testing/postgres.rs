//! [`TestPostgres`]: a private PostgreSQL server for tests of cluster mode, started from the
//! system's own binaries (`initdb`, `postgres`) in a temporary directory on a free port, and
//! gone with the process that started it.
//!
//! The server runs under a small shell that holds the test process's end of a pipe: when the
//! test process exits — normally, by a panic or killed — the pipe closes, the shell stops the
//! server (fast shutdown) and removes its directory. Nothing is left running, whatever happens
//! to the test.
//!
//! Run as root (as CI does), the server runs as the `postgres` user (PostgreSQL refuses root).

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use tokio_postgres::NoTls;

/// What went wrong starting the test server.
#[derive(Debug, thiserror::Error)]
pub enum TestPostgresError {
    /// No PostgreSQL server binaries were found.
    #[error(
        "no PostgreSQL server binaries (initdb, postgres) found on PATH, in $EVENTUAL_PG_BIN or under /usr/lib/postgresql/*/bin: install Debian's `postgresql` package"
    )]
    NotInstalled,
    /// A step failed; the message says which and what it printed.
    #[error("{0}")]
    Failed(String),
}

/// A private PostgreSQL server. Dropping it (or the test process ending) stops it and removes
/// its files.
#[derive(Debug)]
pub struct TestPostgres {
    port: u16,
    /// The shell's stdin (closing it stops the server for good; lines stop and start it) and
    /// the server's changes as its log reports them.
    control: tokio::sync::Mutex<(
        ChildStdin,
        tokio::sync::mpsc::UnboundedReceiver<Result<Change, String>>,
    )>,
    _shell: Child,
}

/// The server came up or went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Up,
    Down,
}

impl TestPostgres {
    /// Starts a server, blocking until it accepts connections (a few seconds).
    pub fn start() -> Result<Self, TestPostgresError> {
        let bin = find_binaries().ok_or(TestPostgresError::NotInstalled)?;
        let dir = tempfile_dir()?;
        let data = dir.join("data");
        let as_root = is_root();
        if as_root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir))?;
        }
        let initdb = bin.join("initdb");
        run(as_postgres(as_root, &initdb)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data))?;
        let port = free_port()?;
        // The server logs to our stderr pipe; `cat` returns when our end of stdin closes,
        // whatever way this process ends, and the shell then stops the server and cleans up.
        // Lines on stdin stop and start the server again (`stop`, `start`).
        let script = format!(
            "up() {{ {postgres} -D {data} -p {port} -k {dir} -c listen_addresses=127.0.0.1 \
             -c fsync=off -c synchronous_commit=off -c max_connections=300 & pid=$!; }}; up; \
             while read cmd; do case \"$cmd\" in stop) kill -INT $pid; wait $pid;; start) up;; esac; done; \
             kill -INT $pid; wait $pid; rm -rf {dir}",
            postgres = shell_quote(&bin.join("postgres")),
            data = shell_quote(&data),
            dir = shell_quote(&dir),
        );
        let mut shell = as_postgres(as_root, Path::new("/bin/sh"))
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TestPostgresError::Failed(format!("failed to start postgres: {e}")))?;
        let lifeline = shell.stdin.take().expect("piped stdin");
        let stderr = shell.stderr.take().expect("piped stderr");
        // The server's log is read by a thread that reports when it is up or down.
        // The first change is waited for here, outside any runtime; the later ones by the async
        // `stop` and `start_again`.
        let (first, first_change) = std::sync::mpsc::channel();
        let (events, changes) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut first = Some(first);
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let change = if line.contains("ready to accept connections") {
                    Some(Ok(Change::Up))
                } else if line.contains("database system is shut down") {
                    Some(Ok(Change::Down))
                } else {
                    None
                };
                seen.push(line);
                if let Some(change) = change {
                    seen.clear();
                    match first.take() {
                        Some(first) => {
                            let _ = first.send(change);
                        }
                        None => {
                            let _ = events.send(change);
                        }
                    }
                }
            }
            let ended = Err(seen.join("\n"));
            match first.take() {
                Some(first) => {
                    let _ = first.send(ended);
                }
                None => {
                    let _ = events.send(ended);
                }
            }
        });
        match first_change.recv().ok() {
            Some(Ok(Change::Up)) => {}
            Some(Ok(Change::Down)) | None => {
                return Err(TestPostgresError::Failed(
                    "postgres stopped at start".into(),
                ));
            }
            Some(Err(log)) => {
                return Err(TestPostgresError::Failed(format!(
                    "postgres stopped before accepting connections:\n{log}"
                )));
            }
        }
        Ok(Self {
            port,
            control: tokio::sync::Mutex::new((lifeline, changes)),
            _shell: shell,
        })
    }

    /// Starts a server for `test`, or — where PostgreSQL is not installed and
    /// `EVENTUAL_REQUIRE_POSTGRES` is not set — says `SKIPPED <test>: …` on stderr and answers
    /// `None`, so the default build needs no PostgreSQL. Panics on any other failure (and on a
    /// missing installation when it is required, as `scripts/test.sh` does).
    pub fn start_or_skip(test: &str) -> Option<Self> {
        match Self::start() {
            Ok(server) => Some(server),
            Err(e @ TestPostgresError::NotInstalled)
                if std::env::var_os("EVENTUAL_REQUIRE_POSTGRES").is_none() =>
            {
                eprintln!("SKIPPED {test}: {e}");
                None
            }
            Err(e) => panic!("failed to start PostgreSQL: {e}"),
        }
    }

    /// Stops the server (fast shutdown: connections are cut) until [`start_again`](Self::start_again).
    pub async fn stop(&self) -> Result<(), TestPostgresError> {
        self.command("stop", Change::Down).await
    }

    /// Starts a stopped server again on the same port and data.
    pub async fn start_again(&self) -> Result<(), TestPostgresError> {
        self.command("start", Change::Up).await
    }

    async fn command(&self, command: &str, expect: Change) -> Result<(), TestPostgresError> {
        let mut control = self.control.lock().await;
        let (stdin, changes) = &mut *control;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .map_err(|e| TestPostgresError::Failed(format!("the server's shell is gone: {e}")))?;
        match changes.recv().await {
            Some(Ok(change)) if change == expect => Ok(()),
            Some(Ok(change)) => Err(TestPostgresError::Failed(format!(
                "asked to {command}, the server went {change:?}"
            ))),
            Some(Err(log)) => Err(TestPostgresError::Failed(format!(
                "the server ended:\n{log}"
            ))),
            None => Err(TestPostgresError::Failed("the server ended".into())),
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a new, empty database and answers its URL: one per test keeps tests apart.
    pub async fn fresh_database(&self) -> Result<String, TestPostgresError> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (client, connection) = tokio_postgres::connect(&self.url("postgres"), NoTls)
            .await
            .map_err(|e| TestPostgresError::Failed(format!("failed to connect: {e}")))?;
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| TestPostgresError::Failed(format!("CREATE DATABASE failed: {e}")))?;
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
        Ok(self.url(&name))
    }
}

/// The directory holding `initdb` and `postgres`.
fn find_binaries() -> Option<PathBuf> {
    let has = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("EVENTUAL_PG_BIN").map(PathBuf::from) {
        return has(&dir).then_some(dir);
    }
    if let Some(path) = std::env::var_os("PATH") {
        // `initdb` on PATH is often a link into the real directory (Debian's wrappers are not).
        for dir in std::env::split_paths(&path) {
            if let Ok(real) = std::fs::canonicalize(dir.join("initdb")) {
                if let Some(parent) = real.parent().filter(|p| has(p)) {
                    return Some(parent.to_path_buf());
                }
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|dir| has(dir))
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn as_postgres(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn tempfile_dir() -> Result<PathBuf, TestPostgresError> {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let dir = std::env::temp_dir().join(format!(
        "eventual-pg-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| {
        TestPostgresError::Failed(format!("failed to create {}: {e}", dir.display()))
    })?;
    Ok(dir)
}

fn free_port() -> Result<u16, TestPostgresError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| TestPostgresError::Failed(format!("no free port: {e}")))
}

fn run(command: &mut Command) -> Result<(), TestPostgresError> {
    let output = command
        .output()
        .map_err(|e| TestPostgresError::Failed(format!("failed to run {command:?}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(TestPostgresError::Failed(format!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
