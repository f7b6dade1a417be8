//! Signature verification (`PUT /verifiers/{id}`): a verifier names a key prefix, a scheme and a
//! secret; every callback whose key it covers gets a `signature` in its record saying whether it
//! verified, and with `reject: true` an invalid one is answered `401` (and still recorded).
//!
//! Which verifier applies: the one with the **longest** prefix the key starts with (ties cannot
//! happen between different prefixes; equal prefixes go to the smallest id).
//!
//! Secrets are kept in [`Secret`], whose `Debug` is redacted; the API shows `"secret": "***"`.
//! `verifiers.json` under `--data-dir` does hold them (a restart must keep them), mode 0600.
//!
//! - `schemes.rs` — what each scheme signs and where it puts the signature.

pub(crate) mod schemes;

use std::{collections::BTreeMap, time::Duration};

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use schemes::Encoding;

/// What every scheme that signs a timestamp accepts by default: 5 minutes either side.
pub(crate) const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// The scheme names `scheme` accepts.
pub(crate) const SCHEMES: &[&str] = &[
    "github",
    "stripe",
    "standard-webhooks",
    "slack",
    "shopify",
    "hmac-sha256",
];

/// A secret: never shown by `Debug`, never returned by the API.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One verifier as stored (and persisted in `verifiers.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Verifier {
    pub(crate) prefix: String,
    pub(crate) scheme: String,
    pub(crate) secret: Secret,
    /// For schemes that sign a timestamp; humantime text as given (`5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tolerance: Option<String>,
    #[serde(default)]
    pub(crate) reject: bool,
    /// `hmac-sha256` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) header: Option<String>,
    /// `hmac-sha256` only: `hex` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) encoding: Option<String>,
    /// `hmac-sha256` only, e.g. `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) signature_prefix: Option<String>,
}

/// The outcome recorded in a callback's `signature`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Signature {
    /// The id of the verifier that applied.
    pub verifier: String,
    /// Its scheme.
    pub scheme: String,
    /// Whether the signature verified.
    pub valid: bool,
    /// What failed (missing header, bad format, mismatch, timestamp outside tolerance); absent
    /// when valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

const FIELDS: &[&str] = &[
    "prefix",
    "scheme",
    "secret",
    "tolerance",
    "reject",
    "header",
    "encoding",
    "signature_prefix",
];

impl Verifier {
    /// Checks a `PUT /verifiers/{id}` body; the error lists every problem by field.
    pub(crate) fn validate(body: &Value) -> Result<Self, Vec<(String, String)>> {
        let mut problems: Vec<(String, String)> = Vec::new();
        let Some(obj) = body.as_object() else {
            return Err(vec![(
                "body".into(),
                "must be a JSON object with prefix, scheme and secret".into(),
            )]);
        };
        let mut text = |name: &str, required: bool| -> Option<String> {
            match obj.get(name) {
                Some(Value::String(s)) => Some(s.clone()),
                None | Some(Value::Null) if !required => None,
                None => {
                    problems.push((name.into(), "is required".into()));
                    None
                }
                Some(_) => {
                    problems.push((name.into(), "must be a string".into()));
                    None
                }
            }
        };
        let prefix = text("prefix", true);
        let scheme = text("scheme", true);
        let secret = text("secret", true);
        let tolerance = text("tolerance", false);
        let header = text("header", false);
        let encoding = text("encoding", false);
        let signature_prefix = text("signature_prefix", false);
        let reject = match obj.get("reject") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                problems.push(("reject".into(), "must be true or false".into()));
                false
            }
        };
        for name in obj.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
            problems.push((
                name.clone(),
                format!("is not a field of a verifier: give {}", FIELDS.join(", ")),
            ));
        }
        if let Some(s) = &scheme {
            if !SCHEMES.contains(&s.as_str()) {
                problems.push((
                    "scheme".into(),
                    format!("unknown scheme {s:?}: use one of {}", SCHEMES.join(", ")),
                ));
            }
        }
        if secret.as_deref() == Some("") {
            problems.push(("secret".into(), "must not be empty".into()));
        }
        if let (Some("standard-webhooks"), Some(sec)) = (scheme.as_deref(), &secret) {
            if !sec.is_empty() && schemes::standard_webhooks_key(sec).is_none() {
                problems.push((
                    "secret".into(),
                    "a standard-webhooks secret is `whsec_` followed by base64".into(),
                ));
            }
        }
        if let Some(t) = &tolerance {
            if crate::duration::parse_duration(t).is_err() {
                problems.push((
                    "tolerance".into(),
                    format!(
                        "{t:?} is not a duration ({})",
                        crate::duration::DURATION_FORMS
                    ),
                ));
            }
        }
        let is_hmac = scheme.as_deref() == Some("hmac-sha256");
        if is_hmac {
            match &header {
                None => problems.push((
                    "header".into(),
                    "is required for hmac-sha256: the header that carries the signature".into(),
                )),
                Some(h) if axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() => {
                    problems.push(("header".into(), format!("{h:?} is not a header name")))
                }
                Some(_) => {}
            }
            if let Some(e) = &encoding {
                if e != "hex" && e != "base64" {
                    problems.push((
                        "encoding".into(),
                        format!("{e:?} is not an encoding: use hex or base64"),
                    ));
                }
            }
        } else if scheme.is_some() {
            for (name, given) in [
                ("header", &header),
                ("encoding", &encoding),
                ("signature_prefix", &signature_prefix),
            ] {
                if given.is_some() {
                    problems.push((name.into(), "only applies to scheme hmac-sha256".into()));
                }
            }
        }
        match (prefix, scheme, secret, problems.is_empty()) {
            (Some(prefix), Some(scheme), Some(secret), true) => Ok(Self {
                prefix,
                scheme,
                secret: Secret(secret),
                tolerance,
                reject,
                header: header.map(|h| h.to_ascii_lowercase()),
                encoding,
                signature_prefix,
            }),
            _ => Err(problems),
        }
    }

    /// The verifier as the API shows it: the secret replaced by `"***"`.
    pub(crate) fn redacted(&self, id: &str) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("secret".into(), Value::String("***".into()));
            obj.insert("id".into(), Value::String(id.into()));
        }
        v
    }

    fn tolerance(&self) -> Duration {
        self.tolerance
            .as_deref()
            .and_then(|t| crate::duration::parse_duration(t).ok())
            .unwrap_or(DEFAULT_TOLERANCE)
    }

    /// Verifies one request's raw body and headers; `now` in seconds since the epoch.
    pub(crate) fn check(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), String> {
        let secret = self.secret.0.as_bytes();
        let tol = self.tolerance();
        match self.scheme.as_str() {
            "github" => schemes::github(secret, headers, body),
            "shopify" => schemes::shopify(secret, headers, body),
            "stripe" => schemes::stripe(secret, headers, body, now, tol),
            "slack" => schemes::slack(secret, headers, body, now, tol),
            "standard-webhooks" => {
                let key = schemes::standard_webhooks_key(&self.secret.0)
                    .ok_or("bad format: the verifier's secret is not whsec_<base64>")?;
                schemes::standard_webhooks(&key, headers, body, now, tol)
            }
            "hmac-sha256" => schemes::hmac_header(
                secret,
                headers,
                body,
                self.header.as_deref().unwrap_or_default(),
                if self.encoding.as_deref() == Some("base64") {
                    Encoding::Base64
                } else {
                    Encoding::Hex
                },
                self.signature_prefix.as_deref(),
            ),
            other => Err(format!("unknown scheme {other}")),
        }
    }
}

/// The verifier for `key`: the longest prefix it starts with.
pub(crate) fn select<'a>(
    verifiers: &'a BTreeMap<String, Verifier>,
    key: &str,
) -> Option<(&'a str, &'a Verifier)> {
    verifiers
        .iter()
        .filter(|(_, v)| key.starts_with(&v.prefix))
        // max_by_key keeps the last of equals; iterate reversed so the smallest id wins ties.
        .rev()
        .max_by_key(|(_, v)| v.prefix.len())
        .map(|(id, v)| (id.as_str(), v))
}

/// Checks a callback under `key` against the verifier that applies, if any.
pub(crate) fn verify(
    verifiers: &BTreeMap<String, Verifier>,
    key: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<(Signature, bool)> {
    let (id, v) = select(verifiers, key)?;
    let result = v.check(headers, body, crate::record::now_ms() / 1000);
    let valid = result.is_ok();
    Some((
        Signature {
            verifier: id.to_owned(),
            scheme: v.scheme.clone(),
            valid,
            reason: result.err(),
        },
        v.reject && !valid,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_problem_is_listed() {
        let problems = Verifier::validate(&json!({
            "scheme": "hmac-sha256", "encoding": "hex2", "tolerance": "soon", "extra": 1
        }))
        .unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        for f in [
            "prefix",
            "secret",
            "extra",
            "tolerance",
            "header",
            "encoding",
        ] {
            assert!(fields.contains(&f), "{f} in {problems:?}");
        }
        let problems =
            Verifier::validate(&json!({"prefix": "p", "scheme": "rot13", "secret": "s"}))
                .unwrap_err();
        assert_eq!(problems[0].0, "scheme");
    }

    #[test]
    fn the_longest_prefix_wins_and_debug_redacts() {
        let mk = |p: &str| {
            Verifier::validate(&json!({"prefix": p, "scheme": "github", "secret": "hunter2"}))
                .unwrap()
        };
        let map: BTreeMap<String, Verifier> = [
            ("a".to_owned(), mk("run-")),
            ("b".to_owned(), mk("run-7.")),
            ("c".to_owned(), mk("other")),
        ]
        .into();
        assert_eq!(select(&map, "run-7.x").unwrap().0, "b");
        assert_eq!(select(&map, "run-8").unwrap().0, "a");
        assert!(select(&map, "zzz").is_none());
        let debug = format!("{:?}", map["a"]);
        assert!(!debug.contains("hunter2"), "{debug}");
        assert_eq!(map["a"].redacted("a")["secret"], "***");
    }
}
