//! `eventual.toml`: the scripts (services, build steps, cleanup) a run needs beside its tests
//! (SPEC "Services in a run"), parsed into typed configuration and validated as a whole, so that
//! an upload is refused with *every* problem listed at once.

use std::{collections::BTreeMap, time::Duration};

use toml::{Table, Value};

/// The implicit script that stands for the run's tests.
pub(crate) const TESTS: &str = "tests";

/// Default `timeout` of a script.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);
/// Default `ready_timeout` of a service.
pub(crate) const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// States an `after` entry may list.
pub(crate) const STATES: &[&str] = &[
    "running",
    "ready",
    "passed",
    "failed",
    "timed_out",
    "cancelled",
    "skipped",
    "error",
];

/// A readiness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `GET` answers 2xx or 3xx.
    Http(String),
    /// A TCP connection is accepted.
    Tcp(String),
    /// A shell command exits 0.
    Run(String),
}

/// One script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Its name (`sut`, `build`, …).
    pub name: String,
    /// The shell command (run with bash in the run's working directory).
    pub run: String,
    /// Past this it is terminated and ends `timed_out`.
    pub timeout: Duration,
    /// Start once every entry's script is in one of the listed states.
    pub after: BTreeMap<String, Vec<String>>,
    /// How to tell that a service is ready.
    pub ready: Option<Probe>,
    /// A probe that has not passed by then ends the service `timed_out`.
    pub ready_timeout: Duration,
    /// Runs even when the run is cancelled.
    pub ignore_abort: bool,
}

/// A parsed and validated `eventual.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunConfig {
    /// Names of free loopback ports to allocate per run (given as environment variables).
    pub ports: Vec<String>,
    /// The scripts, by name (not including `tests`).
    pub scripts: BTreeMap<String, Script>,
    /// `[scripts.tests] after = …`, overriding the default.
    pub tests_after: Option<BTreeMap<String, Vec<String>>>,
}

impl RunConfig {
    /// Parses and validates `text`; the error lists every problem found, one per entry.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let table: Table = toml::from_str(text).map_err(|e| vec![syntax_error(text, &e)])?;
        let mut problems = Vec::new();
        let mut config = Self::default();
        for (key, value) in &table {
            match key.as_str() {
                "ports" => config.ports = ports(value, &mut problems),
                "scripts" => match value.as_table() {
                    Some(scripts) => {
                        for (name, body) in scripts {
                            script(name, body, &mut config, &mut problems);
                        }
                    }
                    None => {
                        problems.push("`scripts` must be a table of [scripts.NAME] sections".into())
                    }
                },
                other => problems.push(format!(
                    "unknown key `{other}` (expected `ports` or `scripts`)"
                )),
            }
        }
        let names: Vec<String> = config.scripts.keys().cloned().collect();
        let known = |dep: &str| dep == TESTS || names.iter().any(|n| n == dep);
        let mut check_after = |owner: &str, after: &BTreeMap<String, Vec<String>>| {
            for dep in after.keys() {
                if dep == owner {
                    problems.push(format!("script `{owner}` cannot come after itself"));
                } else if !known(dep) {
                    problems.push(format!(
                        "script `{owner}` comes after `{dep}`, which is not a script here (scripts: {})",
                        if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                    ));
                }
            }
        };
        for s in config.scripts.values() {
            check_after(&s.name, &s.after);
        }
        if let Some(after) = &config.tests_after {
            check_after(TESTS, after);
        }
        if problems.is_empty() {
            if let Some(cycle) = config.find_cycle() {
                problems.push(format!(
                    "the scripts wait on each other in a cycle: {}",
                    cycle.join(" → ")
                ));
            }
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// What `name` waits for, the implicit default of `tests` included.
    pub fn after_of(&self, name: &str) -> BTreeMap<String, Vec<String>> {
        if name != TESTS {
            return self
                .scripts
                .get(name)
                .map(|s| s.after.clone())
                .unwrap_or_default();
        }
        if let Some(after) = &self.tests_after {
            return after.clone();
        }
        // By default `tests` comes after every script that does not itself come after `tests`:
        // passed, or ready if it has a probe (running if it has none).
        self.scripts
            .values()
            .filter(|s| !self.waits_on_tests(&s.name))
            .map(|s| {
                let states = if s.ready.is_some() {
                    ["passed", "ready"]
                } else {
                    ["passed", "running"]
                };
                (
                    s.name.clone(),
                    states.iter().map(|x| (*x).to_owned()).collect(),
                )
            })
            .collect()
    }

    /// Whether `name` comes (directly or through others) after `tests`.
    pub fn waits_on_tests(&self, name: &str) -> bool {
        let mut seen = Vec::new();
        let mut stack = vec![name.to_owned()];
        while let Some(n) = stack.pop() {
            if seen.contains(&n) {
                continue;
            }
            let Some(s) = self.scripts.get(&n) else {
                continue;
            };
            if s.after.contains_key(TESTS) {
                return true;
            }
            stack.extend(s.after.keys().cloned());
            seen.push(n);
        }
        false
    }

    fn find_cycle(&self) -> Option<Vec<String>> {
        let mut nodes: Vec<String> = self.scripts.keys().cloned().collect();
        nodes.push(TESTS.to_owned());
        // 0 = unvisited, 1 = on the current path, 2 = done.
        let mut mark: BTreeMap<String, u8> = BTreeMap::new();
        fn visit(
            c: &RunConfig,
            n: &str,
            mark: &mut BTreeMap<String, u8>,
            path: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            match mark.get(n) {
                Some(2) => return None,
                Some(1) => {
                    let from = path.iter().position(|p| p == n).unwrap_or(0);
                    let mut cycle = path[from..].to_vec();
                    cycle.push(n.to_owned());
                    return Some(cycle);
                }
                _ => {}
            }
            mark.insert(n.to_owned(), 1);
            path.push(n.to_owned());
            for dep in c.after_of(n).keys() {
                if let Some(cycle) = visit(c, dep, mark, path) {
                    return Some(cycle);
                }
            }
            path.pop();
            mark.insert(n.to_owned(), 2);
            None
        }
        for n in &nodes {
            if let Some(cycle) = visit(self, n, &mut mark, &mut Vec::new()) {
                return Some(cycle);
            }
        }
        None
    }
}

fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_owned();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("eventual.toml does not parse at line {line}, column {column}: {message}")
        }
        None => format!("eventual.toml does not parse: {message}"),
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn ports(value: &Value, problems: &mut Vec<String>) -> Vec<String> {
    let Some(list) = value.as_array() else {
        problems.push("`ports` must be a list of names, e.g. ports = [\"SUT_PORT\"]".into());
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in list {
        match item.as_str() {
            Some(name) if is_env_name(name) => out.push(name.to_owned()),
            Some(name) => problems.push(format!(
                "port name `{name}` is not an environment-variable name (letters, digits and _, not starting with a digit)"
            )),
            None => problems.push(format!("port name {item} is not a string")),
        }
    }
    out
}

fn duration(owner: &str, key: &str, value: &Value, problems: &mut Vec<String>) -> Option<Duration> {
    // A string as on the command line ("30s", "5m", "30"), or a bare number of seconds.
    let parsed = match value {
        Value::String(s) => sink::parse_duration(s).ok(),
        Value::Integer(n) => u64::try_from(*n).ok().map(Duration::from_secs),
        Value::Float(f) => Duration::try_from_secs_f64(*f).ok(),
        _ => None,
    };
    match parsed {
        Some(d) if !d.is_zero() => Some(d),
        _ => {
            problems.push(format!(
                "script `{owner}`: `{key}` = {value} is not a duration such as \"30s\", \"5m\" or 30 (seconds)"
            ));
            None
        }
    }
}

fn after(owner: &str, value: &Value, problems: &mut Vec<String>) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Some(table) = value.as_table() else {
        problems.push(format!(
            "script `{owner}`: `after` must be a table such as {{ build = [\"passed\"] }}"
        ));
        return out;
    };
    for (dep, states) in table {
        let Some(list) = states.as_array() else {
            problems.push(format!(
                "script `{owner}`: `after.{dep}` must be a list of states"
            ));
            continue;
        };
        let mut good = Vec::new();
        for s in list {
            match s.as_str() {
                Some(state) if STATES.contains(&state) => good.push(state.to_owned()),
                _ => problems.push(format!(
                    "script `{owner}`: `after.{dep}` lists {s}, which is not a state (one of {})",
                    STATES.join(", ")
                )),
            }
        }
        if list.is_empty() {
            problems.push(format!("script `{owner}`: `after.{dep}` lists no state"));
        }
        out.insert(dep.clone(), good);
    }
    out
}

fn script(name: &str, body: &Value, config: &mut RunConfig, problems: &mut Vec<String>) {
    let Some(table) = body.as_table() else {
        problems.push(format!("`scripts.{name}` must be a table"));
        return;
    };
    if !is_env_name(name)
        && !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        problems.push(format!(
            "script name `{name}` may only use letters, digits, `-` and `_`"
        ));
    }
    if name == TESTS {
        for (key, value) in table {
            match key.as_str() {
                "after" => config.tests_after = Some(after(name, value, problems)),
                other => problems.push(format!(
                    "`scripts.tests` stands for the run's tests and only takes `after` (not `{other}`)"
                )),
            }
        }
        return;
    }
    let mut s = Script {
        name: name.to_owned(),
        run: String::new(),
        timeout: DEFAULT_TIMEOUT,
        after: BTreeMap::new(),
        ready: None,
        ready_timeout: DEFAULT_READY_TIMEOUT,
        ignore_abort: false,
    };
    for (key, value) in table {
        match key.as_str() {
            "run" => match value.as_str() {
                Some(cmd) if !cmd.trim().is_empty() => s.run = cmd.to_owned(),
                _ => problems.push(format!("script `{name}`: `run` must be a non-empty shell command")),
            },
            "timeout" => s.timeout = duration(name, key, value, problems).unwrap_or(s.timeout),
            "ready_timeout" => s.ready_timeout = duration(name, key, value, problems).unwrap_or(s.ready_timeout),
            "after" => s.after = after(name, value, problems),
            "ignore_abort" => match value.as_bool() {
                Some(b) => s.ignore_abort = b,
                None => problems.push(format!("script `{name}`: `ignore_abort` must be true or false")),
            },
            "ready" => match value.as_table() {
                Some(probe) if probe.len() == 1 => {
                    let (kind, target) = probe.iter().next().map(|(k, v)| (k.as_str(), v.as_str())).unwrap_or(("", None));
                    s.ready = match (kind, target) {
                        ("http", Some(t)) => Some(Probe::Http(t.to_owned())),
                        ("tcp", Some(t)) => Some(Probe::Tcp(t.to_owned())),
                        ("run", Some(t)) => Some(Probe::Run(t.to_owned())),
                        _ => {
                            problems.push(format!(
                                "script `{name}`: `ready` must be {{ http = \"URL\" }}, {{ tcp = \"HOST:PORT\" }} or {{ run = \"COMMAND\" }}"
                            ));
                            None
                        }
                    };
                }
                _ => problems.push(format!(
                    "script `{name}`: `ready` must be exactly one of {{ http = \"URL\" }}, {{ tcp = \"HOST:PORT\" }}, {{ run = \"COMMAND\" }}"
                )),
            },
            other => problems.push(format!(
                "script `{name}`: unknown key `{other}` (expected run, timeout, after, ready, ready_timeout, ignore_abort)"
            )),
        }
    }
    if s.run.is_empty() && !table.contains_key("run") {
        problems.push(format!("script `{name}`: `run` is required"));
    }
    config.scripts.insert(name.to_owned(), s);
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
ports = ["SUT_PORT"]

[scripts.build]
run = "cargo build --release"
timeout = "5m"

[scripts.sut]
run = "./target/release/sut --port $SUT_PORT"
after = { build = ["passed"] }
ready = { http = "http://127.0.0.1:${SUT_PORT}/health" }
ready_timeout = "60s"

[scripts.cleanup]
run = "rm -rf /tmp/sut-data"
after = { tests = ["passed", "failed", "timed_out", "cancelled", "skipped", "error"] }
ignore_abort = true
"#;

    #[test]
    fn the_spec_example_parses_with_its_defaults() {
        let c = RunConfig::parse(EXAMPLE).expect("valid");
        assert_eq!(c.ports, vec!["SUT_PORT"]);
        assert_eq!(c.scripts["build"].timeout, Duration::from_secs(300));
        assert_eq!(c.scripts["sut"].ready_timeout, Duration::from_secs(60));
        assert!(c.scripts["cleanup"].ignore_abort);
        let tests_after = c.after_of(TESTS);
        assert_eq!(
            tests_after.keys().collect::<Vec<_>>(),
            ["build", "sut"],
            "cleanup comes after tests"
        );
        assert_eq!(tests_after["sut"], ["passed", "ready"]);
        assert!(c.waits_on_tests("cleanup"));
    }

    #[test]
    fn a_duration_may_be_a_bare_number_of_seconds() {
        let c = RunConfig::parse(
            "[scripts.a]\nrun = \"true\"\ntimeout = 45\nready_timeout = \"2.5\"\n",
        )
        .expect("valid");
        assert_eq!(c.scripts["a"].timeout, Duration::from_secs(45));
        assert_eq!(c.scripts["a"].ready_timeout, Duration::from_millis(2500));
        let problems =
            RunConfig::parse("[scripts.a]\nrun = \"true\"\ntimeout = -1\n").expect_err("bad");
        assert!(
            problems.iter().any(|p| p.contains("`timeout` = -1")),
            "{problems:?}"
        );
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let bad = r#"
colour = "red"
ports = ["9LIVES", "OK_PORT"]
[scripts.a]
run = "true"
after = { nobody = ["passed"], b = ["finished"] }
timeout = "soon"
wobble = 1
[scripts.b]
ready = { http = "x", tcp = "y" }
"#;
        let problems = RunConfig::parse(bad).expect_err("invalid");
        let all = problems.join("\n");
        for hint in [
            "unknown key `colour`",
            "9LIVES",
            "`nobody`",
            "\"finished\"",
            "\"soon\"",
            "unknown key `wobble`",
            "exactly one",
            "`run` is required",
        ] {
            assert!(all.contains(hint), "missing {hint:?} in:\n{all}");
        }
    }

    #[test]
    fn a_cycle_is_spelled_out() {
        let cyclic = r#"
[scripts.a]
run = "true"
after = { b = ["passed"] }
[scripts.b]
run = "true"
after = { a = ["passed"] }
"#;
        let problems = RunConfig::parse(cyclic).expect_err("cycle");
        assert!(
            problems[0].contains("a → b → a") || problems[0].contains("b → a → b"),
            "{problems:?}"
        );
        let through_tests = r#"
[scripts.svc]
run = "true"
after = { tests = ["passed"] }
[scripts.tests]
after = { svc = ["ready"] }
"#;
        let problems = RunConfig::parse(through_tests).expect_err("cycle through tests");
        assert!(problems[0].contains("tests"), "{problems:?}");
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let problems =
            RunConfig::parse("ports = [\"A\"]\n[scripts.x\nrun = 1\n").expect_err("syntax");
        assert!(problems[0].contains("line 2"), "{problems:?}");
    }
}
