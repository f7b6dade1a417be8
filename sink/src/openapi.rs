//! The sink's OpenAPI 3.1 document (`GET /openapi.json`), generated from the handlers'
//! `#[utoipa::path]` annotations and the payload types' `ToSchema` derives. `eventual serve` merges
//! the harness's document into it ([`Sink::add_openapi`](crate::Sink::add_openapi)).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::{OpenApi as _, ToSchema};

/// Every error the API answers: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error itself: a stable code and a message saying what was wrong and what to do.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable `snake_case` code, e.g. `not_found`, `invalid_wait`.
    pub code: String,
    /// What was wrong and what to do about it.
    pub message: String,
    /// `422 invalid_fields` (a stub; a run, under the harness): every invalid field with what is
    /// wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
    /// `422 invalid_config` (harness): every problem of the `eventual.toml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<String>>,
}

/// The answer to a recorded callback.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stored {
    /// The key it was stored under.
    pub key: String,
    /// Its position under the key: 1, 2, …
    pub seq: u64,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// Records held.
    pub callbacks: u64,
    /// Requests waiting for a callback now.
    pub waiting: u64,
}

/// `GET /callbacks/{key}/all`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Callbacks {
    /// The key.
    pub key: String,
    /// Its records, oldest first.
    pub callbacks: Vec<crate::Record>,
}

/// `GET /callbacks?prefix=P`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// The keys under the prefix, sorted.
    pub keys: Vec<crate::KeySummary>,
    /// When the page is full: the `after` of the next page.
    pub next_after: Option<String>,
}

/// `GET /stubs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StubList {
    /// Every stub, by id.
    pub stubs: Vec<crate::StubInfo>,
}

/// `DELETE /stubs?prefix=P`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StubsDeleted {
    /// The ids of the stubs deleted.
    pub deleted: Vec<String>,
}

/// The sink's routes as an OpenAPI 3.1 document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = crate::routes::SinkApi::openapi();
    // A callback may come without a body.
    optional_body(&mut doc, "/callbacks");
    optional_body(&mut doc, "/callbacks/{key}");
    doc
}

/// Marks every request body of `path` optional (utoipa requires a body it is given a type of).
pub fn optional_body(doc: &mut utoipa::openapi::OpenApi, path: &str) {
    let Some(item) = doc.paths.paths.get_mut(path) else {
        return;
    };
    for op in [&mut item.post, &mut item.put, &mut item.patch]
        .into_iter()
        .flatten()
    {
        if let Some(body) = &mut op.request_body {
            body.required = Some(utoipa::openapi::Required::False);
        }
    }
}

/// `PUT /verifiers/{id}`: a signature verifier for the keys under `prefix`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifierBody {
    /// Keys it covers; the longest matching prefix applies.
    pub prefix: String,
    /// `github`, `stripe`, `standard-webhooks`, `slack`, `shopify` or `hmac-sha256`.
    pub scheme: String,
    /// The signing secret (`whsec_…` for standard-webhooks). Never returned.
    pub secret: String,
    /// For schemes that sign a timestamp (default `5m`).
    pub tolerance: Option<String>,
    /// Answer an invalid signature `401 invalid_signature` (still recorded).
    pub reject: Option<bool>,
    /// `hmac-sha256`: the header carrying the signature.
    pub header: Option<String>,
    /// `hmac-sha256`: `hex` (default) or `base64`.
    pub encoding: Option<String>,
    /// `hmac-sha256`: text before the signature, e.g. `sha256=`.
    pub signature_prefix: Option<String>,
}

/// A verifier as answered: its fields with `"secret": "***"`, and its `id`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifierView {
    /// Its id.
    pub id: String,
    /// Keys it covers.
    pub prefix: String,
    /// Its scheme.
    pub scheme: String,
    /// Always `***`.
    pub secret: String,
    /// As given.
    pub tolerance: Option<String>,
    /// Whether invalid signatures are answered `401`.
    pub reject: bool,
    /// `hmac-sha256` only.
    pub header: Option<String>,
    /// `hmac-sha256` only.
    pub encoding: Option<String>,
    /// `hmac-sha256` only.
    pub signature_prefix: Option<String>,
}

/// `GET /verifiers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifierList {
    /// Every verifier, by id.
    pub verifiers: Vec<VerifierView>,
}

/// `DELETE /verifiers?prefix=P`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    /// The ids removed.
    pub removed: Vec<String>,
}
