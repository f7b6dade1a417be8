//! Stubs: scripted answers to callbacks (`PUT /stubs/{id}`), so a test can make the sink behave
//! like a failing receiver — `503` twice then `200`, a slow answer, a dropped connection — and
//! check how the system under test copes.
//!
//! A stub names one key (`key`) or every key under a prefix (`prefix`) and lists `responses`;
//! with each response's `times` expanded, they answer a key's callbacks by `seq` (seq 1 gets the
//! first). Past the end, [`Then`] decides. An exact-key stub wins over prefix stubs, the longest
//! prefix over shorter ones, and between equals the smallest id. Every callback is still
//! recorded; a stubbed one carries `"response"` ([`Responded`]) in its record.
//!
//! # Layout
//! - `mod.rs` — the types: [`Stub`], [`StubResponse`], [`Then`], [`StubInfo`], [`Responded`].
//! - `validate.rs` — a `PUT` body to a [`Stub`], listing every problem at once.
//! - `set.rs` — [`StubSet`]: the stubs (persisted through `Definitions`), matching, hits.
//! - `plan.rs` — [`Plan`]: one stub's script for one callback, `seq` → response (the insert's
//!   hook, see `annotate.rs`).
//! - `answer.rs` — [`Answer`] to HTTP: the delay, the body, the dropped connection.

mod answer;
mod plan;
mod set;
mod validate;

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

pub(crate) use answer::Answer;
pub(crate) use plan::Plan;
pub(crate) use set::StubSet;
pub(crate) use validate::parse;

/// The longest delay a response may hold its answer.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// A scripted set of answers for one key or every key under a prefix (`PUT /stubs/{id}`).
///
/// ```
/// use sink::{Stub, StubResponse, Then};
/// let stub = Stub::for_key("job-42", [StubResponse::status(503).times(2), StubResponse::status(200)])
///     .then(Then::Cycle);
/// assert_eq!(serde_json::to_value(&stub).unwrap()["responses"][0]["times"], 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stub {
    /// The one key it answers (give this or `prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Every key starting with this (give this or `key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The answers in order; with `times` expanded, seq 1 gets the first.
    pub responses: Vec<StubResponse>,
    /// What answers a seq past the end of `responses`.
    #[serde(default)]
    pub then: Then,
}

impl Stub {
    /// A stub for the one key `key`.
    pub fn for_key(
        key: impl Into<String>,
        responses: impl IntoIterator<Item = StubResponse>,
    ) -> Self {
        Self {
            key: Some(key.into()),
            prefix: None,
            responses: responses.into_iter().collect(),
            then: Then::Last,
        }
    }

    /// A stub for every key under `prefix`.
    pub fn for_prefix(
        prefix: impl Into<String>,
        responses: impl IntoIterator<Item = StubResponse>,
    ) -> Self {
        Self {
            key: None,
            prefix: Some(prefix.into()),
            responses: responses.into_iter().collect(),
            then: Then::Last,
        }
    }

    /// With `then` deciding past the end of the responses.
    pub fn then(mut self, then: Then) -> Self {
        self.then = then;
        self
    }

    /// Whether this stub answers `key`, and how specifically: `Some(usize::MAX)` for its exact
    /// key, `Some(prefix length)` for a prefix.
    pub(crate) fn specificity(&self, key: &str) -> Option<usize> {
        match (&self.key, &self.prefix) {
            (Some(own), _) if own == key => Some(usize::MAX),
            (None, Some(prefix)) if key.starts_with(prefix.as_str()) => Some(prefix.len()),
            _ => None,
        }
    }

    /// Whether its key or prefix starts with `under` (`DELETE /stubs?prefix=`).
    pub(crate) fn is_under(&self, under: &str) -> bool {
        self.key
            .as_deref()
            .or(self.prefix.as_deref())
            .is_some_and(|k| k.starts_with(under))
    }
}

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StubResponse {
    /// HTTP status, 100–599 (default 200). A 1xx is not a final HTTP/1.1 answer: hyper sends
    /// `500` instead (the record keeps the scripted status).
    #[serde(default = "ok")]
    pub status: u16,
    /// How many callbacks in a row it answers (default 1).
    #[serde(default = "one")]
    pub times: u64,
    /// How long the answer is held (humantime, at most 60 s), once the record is stored.
    #[serde(
        default,
        with = "humantime_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "300ms")]
    pub delay: Option<Duration>,
    /// The body: a string is sent as `text/plain`, any other JSON value as JSON. Absent: the
    /// usual `{"key","seq"}` for a 2xx, a JSON error otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// Headers added to the answer (a `content-type` here replaces the body's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Close the connection without answering, as a dead receiver would (after `delay`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub drop: bool,
}

impl StubResponse {
    /// Answers `status` once, with the default body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            times: 1,
            delay: None,
            body: None,
            headers: BTreeMap::new(),
            drop: false,
        }
    }

    /// Closes the connection without an answer.
    pub fn drop_connection() -> Self {
        Self {
            drop: true,
            ..Self::status(200)
        }
    }

    /// Answers `times` callbacks in a row.
    pub fn times(mut self, times: u64) -> Self {
        self.times = times;
        self
    }

    /// Holds the answer this long.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// With this body (a JSON string is sent as text).
    pub fn body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    /// With this header too.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

/// What answers a seq past the end of a stub's responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Then {
    /// The last response, again and again.
    #[default]
    Last,
    /// The responses again from the first.
    Cycle,
    /// The sink's usual answer, as if there were no stub.
    Default,
}

impl Then {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Last => "last",
            Self::Cycle => "cycle",
            Self::Default => "default",
        }
    }
}

/// A stub as `GET /stubs/{id}` answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StubInfo {
    /// Its id.
    pub id: String,
    /// The stub.
    #[serde(flatten)]
    pub stub: Stub,
    /// Callbacks it answered since the sink started or the stub was last put (kept in memory).
    pub hits: u64,
}

/// How a stub answered a callback: the record's `"response"` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Responded {
    /// The status answered; `null` when the connection was dropped instead.
    pub status: Option<u16>,
    /// How long the answer was held, in ms.
    pub delay_ms: u64,
    /// The id of the stub that answered.
    pub stub: String,
    /// Whether the connection was closed without an answer.
    pub dropped: bool,
}

fn ok() -> u16 {
    200
}

fn one() -> u64 {
    1
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `Option<Duration>` as a humantime string (`"300ms"`), read back with [`crate::parse_duration`].
mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| crate::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
