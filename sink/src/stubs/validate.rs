//! A `PUT /stubs/{id}` body to a [`Stub`], or every problem with it at once, by field
//! (`key`, `responses[1].status`, …), as `NewRun::validate` lists a run's in the harness.

use std::collections::BTreeMap;

use axum::http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::{MAX_DELAY, Stub, StubResponse, Then};

/// Most responses one stub lists.
const MAX_RESPONSES: usize = 1000;
/// Longest key or prefix (the sink's key limit).
const MAX_KEY_LEN: usize = 1024;
/// Headers the sink sets itself: a stub's would contradict the body actually sent.
const RESERVED_HEADERS: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

type Problems = Vec<(String, String)>;

/// The stub `body` describes, or every problem with it (field, what is wrong).
pub(crate) fn parse(body: &Value) -> Result<Stub, Problems> {
    let mut problems = Problems::new();
    let Some(fields) = body.as_object() else {
        problems.push((
            "stub".into(),
            "must be a JSON object such as {\"key\": \"job-42\", \"responses\": [{\"status\": 503}]}".into(),
        ));
        return Err(problems);
    };
    for name in fields.keys() {
        if !matches!(name.as_str(), "key" | "prefix" | "responses" | "then") {
            problems.push((
                name.clone(),
                "is not a field of a stub: give key or prefix, responses and then".into(),
            ));
        }
    }
    let key = text(fields, "key", false, &mut problems);
    let prefix = text(fields, "prefix", true, &mut problems);
    match (fields.contains_key("key"), fields.contains_key("prefix")) {
        (true, true) => problems.push((
            "prefix".into(),
            "give key (one key) or prefix (every key under it), not both".into(),
        )),
        (false, false) => problems.push((
            "key".into(),
            "is required: give key (one key) or prefix (every key under it)".into(),
        )),
        _ => {}
    }
    let responses = match fields.get("responses") {
        None => {
            problems.push((
                "responses".into(),
                "is required: a list such as [{\"status\": 503, \"times\": 2}, {\"status\": 200}]"
                    .into(),
            ));
            Vec::new()
        }
        Some(Value::Array(items)) if items.is_empty() => {
            problems.push(("responses".into(), "must list at least one response".into()));
            Vec::new()
        }
        Some(Value::Array(items)) if items.len() > MAX_RESPONSES => {
            problems.push((
                "responses".into(),
                format!(
                    "lists {} responses; at most {MAX_RESPONSES} (use `times` to repeat one)",
                    items.len()
                ),
            ));
            Vec::new()
        }
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| response(&format!("responses[{i}]"), item, &mut problems))
            .collect(),
        Some(_) => {
            problems.push(("responses".into(), "must be a list of responses".into()));
            Vec::new()
        }
    };
    let then = match fields.get("then") {
        None => Then::Last,
        Some(Value::String(s)) if s == "last" => Then::Last,
        Some(Value::String(s)) if s == "cycle" => Then::Cycle,
        Some(Value::String(s)) if s == "default" => Then::Default,
        Some(other) => {
            problems.push((
                "then".into(),
                format!("must be \"last\", \"cycle\" or \"default\", not {other}"),
            ));
            Then::Last
        }
    };
    if problems.is_empty() {
        Ok(Stub {
            key,
            prefix,
            responses,
            then,
        })
    } else {
        Err(problems)
    }
}

/// A key or prefix: a string, at most [`MAX_KEY_LEN`] bytes, non-empty unless `empty_ok`.
fn text(
    fields: &Map<String, Value>,
    name: &str,
    empty_ok: bool,
    problems: &mut Problems,
) -> Option<String> {
    match fields.get(name)? {
        Value::String(s) if s.is_empty() && !empty_ok => {
            problems.push((name.into(), "must not be empty".into()));
            None
        }
        Value::String(s) if s.len() > MAX_KEY_LEN => {
            problems.push((
                name.into(),
                format!("is {} bytes long; at most {MAX_KEY_LEN}", s.len()),
            ));
            None
        }
        Value::String(s) => Some(s.clone()),
        _ => {
            problems.push((name.into(), "must be a string".into()));
            None
        }
    }
}

fn response(at: &str, item: &Value, problems: &mut Problems) -> Option<StubResponse> {
    let Some(fields) = item.as_object() else {
        problems.push((
            at.into(),
            "must be an object such as {\"status\": 503}".into(),
        ));
        return None;
    };
    let before = problems.len();
    let mut problem =
        |field: &str, message: String| problems.push((format!("{at}.{field}"), message));
    for name in fields.keys() {
        if !matches!(
            name.as_str(),
            "status" | "times" | "delay" | "body" | "headers" | "drop"
        ) {
            problem(
                name,
                "is not a field of a response: give status, times, delay, body, headers or drop"
                    .into(),
            );
        }
    }
    let status = match fields.get("status") {
        None => 200,
        Some(v) => match v.as_u64().filter(|s| (100..=599).contains(s)) {
            Some(s) => s as u16,
            None => {
                problem(
                    "status",
                    format!("must be an HTTP status from 100 to 599, not {v}"),
                );
                200
            }
        },
    };
    let times = match fields.get("times") {
        None => 1,
        Some(v) => match v.as_u64().filter(|t| *t >= 1) {
            Some(t) => t,
            None => {
                problem(
                    "times",
                    format!("must be a whole number of at least 1, not {v}"),
                );
                1
            }
        },
    };
    let delay = match fields.get("delay") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_str().map(crate::parse_duration) {
            Some(Ok(d)) if d <= MAX_DELAY => Some(d),
            Some(Ok(_)) => {
                problem(
                    "delay",
                    format!("{v} is longer than the longest delay, 60s"),
                );
                None
            }
            _ => {
                problem(
                    "delay",
                    format!(
                        "must be a duration such as \"300ms\" or \"2s\" (at most 60s), not {v}"
                    ),
                );
                None
            }
        },
    };
    let body = fields.get("body").filter(|b| !b.is_null()).cloned();
    let mut headers = BTreeMap::new();
    match fields.get("headers") {
        None => {}
        Some(Value::Object(given)) => {
            for (name, value) in given {
                let field = format!("headers.{name}");
                let lower = name.to_ascii_lowercase();
                if HeaderName::from_bytes(name.as_bytes()).is_err() {
                    problem(&field, "is not a valid header name".into());
                } else if RESERVED_HEADERS.contains(&lower.as_str()) {
                    problem(
                        &field,
                        "is set by the sink itself and cannot be scripted".into(),
                    );
                } else {
                    match value.as_str().map(HeaderValue::from_str) {
                        Some(Ok(_)) => {
                            headers.insert(lower, value.as_str().unwrap_or_default().to_owned());
                        }
                        _ => problem(&field, "must be a string valid in an HTTP header".into()),
                    }
                }
            }
        }
        Some(_) => problem(
            "headers",
            "must be an object of header names to strings, such as {\"retry-after\": \"1\"}".into(),
        ),
    }
    let drop = match fields.get("drop") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            problem("drop", format!("must be true or false, not {other}"));
            false
        }
    };
    if drop {
        // (`status` is allowed and ignored: the stored form always has one.)
        for sent in ["body", "headers"] {
            if fields.contains_key(sent) {
                problem(
                    sent,
                    "means nothing with \"drop\": true (no answer is sent)".into(),
                );
            }
        }
    }
    (problems.len() == before).then_some(StubResponse {
        status,
        times,
        delay,
        body,
        headers,
        drop,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(body: Value) -> Vec<String> {
        parse(&body)
            .expect_err("invalid")
            .into_iter()
            .map(|(f, _)| f)
            .collect()
    }

    #[test]
    fn the_spec_example_parses_with_its_defaults() {
        let stub = parse(&json!({"key": "job-42",
            "responses": [{"status": 503, "times": 2}, {"status": 200, "delay": "300ms"}],
            "then": "last"}))
        .expect("valid");
        assert_eq!(stub.key.as_deref(), Some("job-42"));
        assert_eq!(stub.responses[0].times, 2);
        assert_eq!(stub.responses[1].times, 1);
        assert_eq!(
            stub.responses[1].delay,
            Some(std::time::Duration::from_millis(300))
        );
        assert_eq!(stub.then, Then::Last);
        let again: Stub = serde_json::from_value(serde_json::to_value(&stub).unwrap()).unwrap();
        assert_eq!(again, stub, "what is stored reads back the same");
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        assert_eq!(
            fields(
                json!({"key": "k", "prefix": "p", "then": "sometimes", "extra": 1,
                "responses": [{"status": 42, "times": 0, "delay": "61s", "colour": "red"},
                              "nope", {"drop": true, "status": 200, "body": 1}, {"headers": {"content-length": "1", "x": 2}}]})
            ),
            [
                "extra",
                "prefix",
                "responses[0].colour",
                "responses[0].status",
                "responses[0].times",
                "responses[0].delay",
                "responses[1]",
                "responses[2].body",
                "responses[3].headers.content-length",
                "responses[3].headers.x",
                "then",
            ]
        );
        assert_eq!(fields(json!({})), ["key", "responses"]);
        assert_eq!(
            fields(json!({"key": "", "responses": []})),
            ["key", "responses"]
        );
        assert_eq!(fields(json!([1])), ["stub"]);
    }
}
