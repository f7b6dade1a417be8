//! `POST /api/runs`' request: typed as JSON, then checked field by field so that every problem
//! is reported at once (`422 invalid_fields` with `error.fields`).

use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::Value;

use std::collections::BTreeMap;

use crate::{
    catalog::{Catalog, TestInfo, TestPath},
    error::ApiError,
    model::{Run, TestStatus},
};

/// Longest username.
const MAX_USERNAME: usize = 64;

/// A field as sent: absent, of the expected JSON type, or of another (kept to say so).
#[derive(Debug, Default)]
enum Field<T> {
    /// Not in the body.
    #[default]
    Missing,
    /// Of the expected type.
    Typed(T),
    /// Anything else (`null` included).
    Other(Value),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through a `Value` rather than `#[serde(untagged)]`, which cannot read numbers when
        // serde_json's `arbitrary_precision` is on (the sink keeps callback numbers exact).
        let value = Value::deserialize(deserializer)?;
        Ok(match T::deserialize(&value) {
            Ok(typed) => Self::Typed(typed),
            Err(_) => Self::Other(value),
        })
    }
}

/// The body of `POST /api/runs` as JSON types.
#[derive(Debug, Default, Deserialize)]
pub(super) struct NewRunBody {
    #[serde(default)]
    username: Field<String>,
    #[serde(default)]
    env_id: Field<u64>,
    #[serde(default)]
    tests: Field<Vec<Field<String>>>,
    /// Anything else: refused by name, so a misspelt field is not silently ignored.
    #[serde(flatten)]
    unknown: BTreeMap<String, Value>,
}

/// A run to create, every field checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NewRun {
    /// Who starts it (trimmed, 1–64 characters, no control characters).
    pub(super) username: String,
    /// Where it runs (`1..=--envs`); `None` for `"any"`: the free environment with the shortest
    /// queue, chosen when it is claimed.
    pub(super) env_id: Option<u32>,
    /// What it runs: catalog tests (not support files), each once, in the order given, with
    /// directories (`smoke/`) and tags (`tag:NAME`) expanded to their tests.
    pub(super) tests: Vec<String>,
}

impl NewRun {
    /// Checks every field of `body`; the error lists every problem.
    pub(super) fn validate(
        body: NewRunBody,
        envs: u32,
        catalog: &Catalog,
    ) -> Result<Self, ApiError> {
        let mut problems = Vec::new();
        let username = match body.username {
            Field::Typed(u) => match check_username(&u) {
                Ok(u) => Some(u),
                Err(why) => {
                    problems.push(("username".into(), why));
                    None
                }
            },
            Field::Other(_) => {
                problems.push(("username".into(), "must be a string".into()));
                None
            }
            Field::Missing => {
                problems.push(("username".into(), "is required".into()));
                None
            }
        };
        for name in body.unknown.keys() {
            problems.push((
                name.clone(),
                "is not a field of a run: give username, env_id and tests".into(),
            ));
        }
        let env_id = match body.env_id {
            Field::Typed(id) if (1..=u64::from(envs)).contains(&id) => {
                u32::try_from(id).ok().map(Some)
            }
            Field::Other(Value::String(any)) if any == "any" => Some(None),
            Field::Typed(_) | Field::Other(Value::Number(_)) => {
                problems.push((
                    "env_id".into(),
                    format!("must be a whole number from 1 to {envs}"),
                ));
                None
            }
            Field::Other(Value::String(_)) => {
                problems.push((
                    "env_id".into(),
                    format!("must be a number from 1 to {envs} (or \"any\"), not another string"),
                ));
                None
            }
            Field::Other(_) => {
                problems.push((
                    "env_id".into(),
                    format!("must be a number from 1 to {envs}"),
                ));
                None
            }
            Field::Missing => {
                problems.push(("env_id".into(), format!("is required (1 to {envs})")));
                None
            }
        };
        let tests = match body.tests {
            Field::Typed(list) if list.is_empty() => {
                problems.push((
                    "tests".into(),
                    "name at least one test (GET /api/tests lists them)".into(),
                ));
                Vec::new()
            }
            Field::Typed(list) => {
                let mut tests: Vec<String> = Vec::new();
                let mut given: Vec<&str> = Vec::new();
                let mut bad = Vec::new();
                // The catalog is walked only if a directory or a tag has to be expanded.
                let listing = std::cell::OnceCell::new();
                for item in &list {
                    match item {
                        Field::Typed(p) if given.contains(&p.as_str()) => {
                            bad.push(format!("{p} is listed twice"));
                        }
                        Field::Typed(p) => {
                            given.push(p);
                            match expand(p, catalog, || listing.get_or_init(|| catalog.list())) {
                                // A test that a directory or tag named already is run once.
                                Ok(found) => {
                                    for t in found {
                                        if !tests.contains(&t) {
                                            tests.push(t);
                                        }
                                    }
                                }
                                Err(why) => bad.push(why),
                            }
                        }
                        Field::Other(v) => bad.push(format!("{v} is not a path, directory or tag")),
                        Field::Missing => {}
                    }
                }
                if !bad.is_empty() {
                    problems.push(("tests".into(), bad.join("; ")));
                }
                tests
            }
            Field::Other(_) => {
                problems.push(("tests".into(), "must be a list of test paths".into()));
                Vec::new()
            }
            Field::Missing => {
                problems.push(("tests".into(), "is required: a list of test paths".into()));
                Vec::new()
            }
        };
        match (username, env_id, problems.is_empty()) {
            (Some(username), Some(env_id), true) => Ok(Self {
                username,
                env_id,
                tests,
            }),
            _ => Err(ApiError::Invalid(problems)),
        }
    }

    /// The same run again (`POST /api/runs/{id}/rerun`), or with `failed_only` just its tests
    /// that did not pass; its tests must still be in the catalog.
    pub(super) fn again(run: &Run, failed_only: bool, catalog: &Catalog) -> Result<Self, ApiError> {
        let tests: Vec<String> = run
            .tests
            .iter()
            .filter(|t| !failed_only || t.status != TestStatus::Passed)
            .map(|t| t.path.clone())
            .collect();
        if tests.is_empty() {
            return Err(ApiError::Invalid(vec![(
                "only".into(),
                format!(
                    "every test of run {} passed: there is nothing to rerun",
                    run.id
                ),
            )]));
        }
        let bad: Vec<String> = tests
            .iter()
            .filter_map(|t| check_test(t, catalog).err())
            .collect();
        if !bad.is_empty() {
            return Err(ApiError::Invalid(vec![("tests".into(), bad.join("; "))]));
        }
        Ok(Self {
            username: run.username.clone(),
            env_id: Some(run.env_id),
            tests,
        })
    }
}

fn check_username(u: &str) -> Result<String, String> {
    if u.trim().is_empty() {
        Err("must not be empty".into())
    } else if u.chars().count() > MAX_USERNAME {
        Err(format!("is longer than {MAX_USERNAME} characters"))
    } else if u.chars().any(char::is_control) {
        Err("must not contain control characters".into())
    } else {
        Ok(u.trim().to_owned())
    }
}

/// One entry of `tests`: a directory (`smoke/`: every test under it), a tag (`tag:NAME`: every
/// test carrying it), or a test path; the tests it names, in catalog order, or why none.
fn expand<'a>(
    entry: &str,
    catalog: &Catalog,
    listing: impl FnOnce() -> &'a [TestInfo],
) -> Result<Vec<String>, String> {
    if let Some(tag) = entry.strip_prefix("tag:") {
        let found: Vec<String> = listing()
            .iter()
            .filter(|t| t.tags.iter().any(|have| have == tag))
            .map(|t| t.path.clone())
            .collect();
        return if found.is_empty() {
            Err(format!(
                "no test is tagged {tag:?} (tags come from `# eventual: tags=…` headers and \
                 preparation/ or validation/ directories; GET /api/tests lists them)"
            ))
        } else {
            Ok(found)
        };
    }
    if let Some(dir) = entry.strip_suffix('/') {
        let dir = TestPath::parse(dir).map_err(|e| format!("directory {e}"))?;
        let under = format!("{}/", dir.as_str());
        let found: Vec<String> = listing()
            .iter()
            .filter(|t| t.path.starts_with(&under))
            .map(|t| t.path.clone())
            .collect();
        return if found.is_empty() {
            Err(format!(
                "there is no test under {entry} (GET /api/tests lists them)"
            ))
        } else {
            Ok(found)
        };
    }
    check_test(entry, catalog).map(|t| vec![t])
}

/// A path that names a runnable test of the catalog, normalised; or why not.
fn check_test(p: &str, catalog: &Catalog) -> Result<String, String> {
    match TestPath::parse(p) {
        Ok(tp) if tp.is_support() => Err(format!(
            "{p} is a support file (its name or a directory starts with `_`, or it is \
             conftest.py): it is not run as a test; run the tests that use it"
        )),
        Ok(tp) if catalog.resolve(&tp).is_some() => Ok(tp.as_str().to_owned()),
        Ok(_) => Err(format!("unknown test {p}")),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.sh"), "exit 0\n").expect("write");
        std::fs::write(dir.path().join("_help.sh"), "exit 0\n").expect("write");
        let catalog =
            Catalog::new(Some(dir.path().into()), dir.path().join("up")).expect("catalog");
        (dir, catalog)
    }

    fn validate(body: Value) -> Result<NewRun, Vec<(String, String)>> {
        let (_dir, catalog) = catalog();
        let body: NewRunBody = serde_json::from_value(body).expect("any object is a body");
        NewRun::validate(body, 4, &catalog).map_err(|e| match e {
            ApiError::Invalid(problems) => problems,
            other => panic!("not a validation error: {other}"),
        })
    }

    fn fields(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn a_good_request_is_trimmed_and_typed() {
        let run =
            validate(serde_json::json!({"username": " ann ", "env_id": 2, "tests": ["a.sh"]}));
        assert_eq!(
            run,
            Ok(NewRun {
                username: "ann".into(),
                env_id: Some(2),
                tests: vec!["a.sh".into()]
            })
        );
    }

    #[test]
    fn every_bad_field_is_listed_at_once() {
        let problems = validate(serde_json::json!({"username": "", "env_id": 9, "tests": []}))
            .expect_err("three problems");
        assert_eq!(fields(&problems), ["username", "env_id", "tests"]);
        let problems = validate(serde_json::json!({})).expect_err("all missing");
        assert_eq!(fields(&problems), ["username", "env_id", "tests"]);
        assert!(problems.iter().all(|(_, m)| m.starts_with("is required")));
    }

    #[test]
    fn wrong_json_types_and_nulls_say_what_was_expected() {
        let problems =
            validate(serde_json::json!({"username": null, "env_id": "2", "tests": "a.sh"}))
                .expect_err("types");
        assert_eq!(
            problems,
            [
                ("username".to_owned(), "must be a string".to_owned()),
                (
                    "env_id".to_owned(),
                    "must be a number from 1 to 4 (or \"any\"), not another string".to_owned()
                ),
                (
                    "tests".to_owned(),
                    "must be a list of test paths".to_owned()
                ),
            ]
        );
        let problems = validate(serde_json::json!({"username": "a", "env_id": 1.5, "tests": [7]}))
            .expect_err("types");
        assert_eq!(problems[0].1, "must be a whole number from 1 to 4");
        assert_eq!(problems[1].1, "7 is not a path, directory or tag");
    }

    #[test]
    fn tests_that_are_unknown_repeated_support_or_escaping_are_refused_together() {
        let problems = validate(serde_json::json!({"username": "a", "env_id": 1,
            "tests": ["a.sh", "a.sh", "nope.sh", "_help.sh", "../x.sh"]}))
        .expect_err("tests");
        let [(field, why)] = problems.as_slice() else {
            panic!("one field: {problems:?}")
        };
        assert_eq!(field, "tests");
        for part in [
            "a.sh is listed twice",
            "unknown test nope.sh",
            "_help.sh is a support file",
            "`..`",
        ] {
            assert!(why.contains(part), "{part}: {why}");
        }
    }
}
