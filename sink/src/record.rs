//! The record envelope: how one received callback is turned into the JSON that every read route
//! returns, and the typed [`Record`] that clients get back.
//!
//! A record is encoded once, when it arrives, and kept as its final JSON bytes: reads then copy
//! bytes instead of serialising on every GET. JSON bodies are embedded verbatim (validated, not
//! re-serialised), so their key order, number formatting and exact bytes survive; `/raw` cuts them
//! back out of the stored record.

use std::{collections::BTreeMap, io::Write as _, time::SystemTime};

use axum::http::{HeaderMap, Method, header};
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One callback as the sink stores and returns it (`GET /callbacks/{key}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Record {
    /// The key the callback was stored under.
    pub key: String,
    /// Position of this record under its key: 1, 2, … in arrival order.
    pub seq: u64,
    /// How a stub answered this callback (`PUT /stubs/{id}`); absent when no stub did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<crate::stubs::Responded>,
    /// When the sink received it, RFC 3339 in UTC with milliseconds.
    pub received_at: String,
    /// HTTP method the system under test used.
    pub method: String,
    /// Request path as received (still percent-encoded).
    pub path: String,
    /// Raw query string, if there was one.
    pub query: Option<String>,
    /// Request headers, names lower-case; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Body length in bytes.
    pub size: usize,
    /// Parsed JSON body, or the body as a string when it is UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// Base64 (standard alphabet) of a body that is neither JSON nor UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The signature check of the verifier that covers the key (`PUT /verifiers/{id}`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::verify::Signature>,
}

impl Record {
    /// Deserialises the JSON body into `T`.
    ///
    /// ```
    /// # let record: sink::Record = serde_json::from_str(r#"{"key":"k","seq":1,"received_at":"2026-01-01T00:00:00.000Z","method":"POST","path":"/callbacks/k","query":null,"headers":{},"content_type":"application/json","size":11,"body":{"ok":true}}"#).unwrap();
    /// #[derive(serde::Deserialize)]
    /// struct Outcome { ok: bool }
    /// let outcome: Outcome = record.json().unwrap();
    /// assert!(outcome.ok);
    /// ```
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(self.body.as_ref().unwrap_or(&serde_json::Value::Null))
    }
}

/// What the sink saw of one request, borrowed from the handler.
#[derive(Debug)]
pub(crate) struct Incoming<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
}

/// A record encoded up to, but not including, its `seq` (which is only known under the key's lock).
#[derive(Debug)]
pub(crate) struct Encoded {
    /// `{"key":"…",`
    head: Vec<u8>,
    /// `"received_at":…}` — everything after `"seq":N,`.
    tail: Vec<u8>,
    pub(crate) received_ms: i64,
}

impl Encoded {
    /// Prefix form for a later `seq`, so the expensive part happens outside the key's lock.
    #[cfg(test)]
    pub(crate) fn new(key: &str, incoming: &Incoming<'_>, received: SystemTime) -> Self {
        Self::signed(key, incoming, received, None)
    }

    /// As [`new`](Self::new), with the outcome of a signature check in the record.
    pub(crate) fn signed(
        key: &str,
        incoming: &Incoming<'_>,
        received: SystemTime,
        signature: Option<&crate::verify::Signature>,
    ) -> Self {
        let mut head = Vec::with_capacity(key.len() + 10);
        head.extend_from_slice(b"{\"key\":");
        write_json_str(&mut head, key);
        head.push(b',');
        let tail = encode_tail(incoming, received, signature);
        let received_ms = received
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self {
            head,
            tail,
            received_ms,
        }
    }

    /// The JSON before `"seq":N,` and after it (a database splices in the seq it assigns).
    pub(crate) fn parts(&self) -> (&[u8], &[u8]) {
        (&self.head, &self.tail)
    }

    /// The record's final JSON.
    #[cfg(test)]
    pub(crate) fn finish(&self, seq: u64) -> Bytes {
        self.finish_with(seq, None)
    }

    /// The record's final JSON, with `response` (a JSON object, from the insert's hook: see
    /// `annotate.rs`) as its `"response"` field, placed after `seq` so the body stays last.
    pub(crate) fn finish_with(&self, seq: u64, response: Option<&[u8]>) -> Bytes {
        let extra = response.map_or(0, |r| r.len() + 12);
        let mut out = Vec::with_capacity(self.head.len() + self.tail.len() + 28 + extra);
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"\"seq\":");
        let _ = write!(out, "{seq}");
        out.push(b',');
        if let Some(response) = response {
            out.extend_from_slice(b"\"response\":");
            out.extend_from_slice(response);
            out.push(b',');
        }
        out.extend_from_slice(&self.tail);
        Bytes::from(out)
    }
}

fn encode_tail(
    incoming: &Incoming<'_>,
    received: SystemTime,
    signature: Option<&crate::verify::Signature>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(incoming.body.len() + 256);
    out.extend_from_slice(b"\"received_at\":\"");
    // Written straight into the record: no intermediate `String` per callback.
    let _ = write!(out, "{}", humantime::format_rfc3339_millis(received));
    out.extend_from_slice(b"\",\"method\":");
    write_json_str(&mut out, incoming.method.as_str());
    out.extend_from_slice(b",\"path\":");
    write_json_str(&mut out, incoming.path);
    out.extend_from_slice(b",\"query\":");
    match incoming.query {
        Some(q) => write_json_str(&mut out, q),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"headers\":{");
    // One pass over the values (a name's values are consecutive), instead of a lookup per name.
    let mut headers = incoming.headers.iter().peekable();
    let mut first = true;
    while let Some((name, value)) = headers.next() {
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_str(&mut out, name.as_str());
        out.push(b':');
        let repeated = headers.peek().is_some_and(|(next, _)| *next == name);
        match value.to_str() {
            // The common case, one value of plain text: no intermediate string.
            Ok(text) if !repeated => write_json_str(&mut out, text),
            _ => {
                let mut joined = String::from_utf8_lossy(value.as_bytes()).into_owned();
                while let Some((_, more)) = headers.next_if(|(next, _)| *next == name) {
                    joined.push_str(", ");
                    joined.push_str(&String::from_utf8_lossy(more.as_bytes()));
                }
                write_json_str(&mut out, &joined);
            }
        }
    }
    out.extend_from_slice(b"},\"content_type\":");
    let content_type = incoming
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    match &content_type {
        Some(ct) => write_json_str(&mut out, ct),
        None => out.extend_from_slice(b"null"),
    }
    if let Some(sig) = signature {
        // Before the body, which must stay the last field (see `raw_body`).
        out.extend_from_slice(b",\"signature\":");
        let _ = serde_json::to_writer(&mut out, sig);
    }
    out.extend_from_slice(b",\"size\":");
    let _ = write!(out, "{}", incoming.body.len());
    match classify(content_type.as_deref(), incoming.body) {
        Body::Json => {
            // Verbatim, surrounding whitespace included: the body is the record's last field,
            // so `/raw` can cut exactly `size` bytes back out (see `raw_body`).
            out.extend_from_slice(BODY_FIELD);
            out.extend_from_slice(incoming.body);
        }
        Body::Text(text) => {
            out.extend_from_slice(BODY_FIELD);
            write_json_str(&mut out, text);
        }
        Body::Binary => {
            out.extend_from_slice(b",\"body_base64\":\"");
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(incoming.body)
                    .as_bytes(),
            );
            out.push(b'"');
        }
    }
    out.push(b'}');
    out
}

const BODY_FIELD: &[u8] = b",\"body\":";

enum Body<'a> {
    Json,
    Text(&'a str),
    Binary,
}

/// JSON when the content type says so (or, lacking one that names another format, the body
/// looks like an object or array) and it parses; else UTF-8 text; else binary.
fn classify<'a>(content_type: Option<&str>, body: &'a [u8]) -> Body<'a> {
    let says_json = content_type.is_some_and(|ct| {
        // Compared without lowering a copy: no allocation per callback.
        let essence = ct.split(';').next().unwrap_or("").trim().as_bytes();
        let ends_with = |suffix: &[u8]| {
            essence.len() >= suffix.len()
                && essence[essence.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        };
        ends_with(b"+json") || ends_with(b"/json")
    });
    let looks_json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{' || *b == b'[');
    if (says_json || looks_json) && serde_json::from_slice::<&RawValue>(body).is_ok() {
        return Body::Json;
    }
    match std::str::from_utf8(body) {
        Ok(text) => Body::Text(text),
        Err(_) => Body::Binary,
    }
}

/// Whether `s` holds a byte JSON escapes (`"`, `\\`, a control character), looked for eight
/// bytes at a time: a byte-by-byte scan of every header of every callback was 5 % of an ingest.
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // Exact test for "some byte of `v` is below `n`" (n ≤ 0x80); a zero byte is `v ^ c` below 1.
    let below = |v: u64, n: u8| v.wrapping_sub(ONES * u64::from(n)) & !v & HIGH != 0;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let v = u64::from_le_bytes(chunk.try_into().expect("chunks of eight bytes"));
        if below(v, 0x20)
            || below(v ^ (ONES * u64::from(b'"')), 1)
            || below(v ^ (ONES * u64::from(b'\\')), 1)
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b == b'"' || b == b'\\' || b < 0x20)
}

pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    // Most strings here (header names and values, methods, paths, keys) need no escape: copied
    // as they are, the same bytes serde_json would write, which escapes only these.
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // serde_json never fails writing a str into a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The exact body bytes of a stored record, and its content type — for `/raw`.
pub(crate) fn raw_body(record_json: &[u8]) -> Option<(Vec<u8>, Option<String>)> {
    #[derive(Deserialize)]
    struct View {
        size: usize,
        body: Option<serde::de::IgnoredAny>,
        body_base64: Option<String>,
        content_type: Option<String>,
    }
    #[derive(Deserialize)]
    struct TextBody {
        body: String,
    }
    let view: View = serde_json::from_slice(record_json).ok()?;
    let bytes = if let Some(b64) = view.body_base64 {
        base64::engine::general_purpose::STANDARD.decode(b64).ok()?
    } else if view.body.is_none() {
        Vec::new()
    } else {
        // A JSON body is embedded verbatim as the last field: `…,"body":<size bytes>}`. A text
        // body is an escaped string, whose inner quotes are all escaped, so it cannot fake the
        // `,"body":` marker at that exact offset.
        let end = record_json.len().checked_sub(1)?;
        let start = end.checked_sub(view.size)?;
        let verbatim = start
            .checked_sub(BODY_FIELD.len())
            .is_some_and(|m| &record_json[m..start] == BODY_FIELD);
        if verbatim {
            record_json[start..end].to_vec()
        } else {
            serde_json::from_slice::<TextBody>(record_json)
                .ok()?
                .body
                .into_bytes()
        }
    };
    Some((bytes, view.content_type))
}

/// Now, in ms since the epoch (how records and expiry deadlines keep time).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `ms` since the epoch as RFC 3339 with milliseconds, as `received_at` is written.
pub(crate) fn format_ms(ms: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(content_type: Option<&str>, body: &[u8]) -> Record {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(header::CONTENT_TYPE, ct.parse().expect("header"));
        }
        headers.append("x-multi", "a".parse().expect("header"));
        headers.append("x-multi", "b".parse().expect("header"));
        let incoming = Incoming {
            method: &Method::POST,
            path: "/callbacks/k%201",
            query: Some("a=1"),
            headers: &headers,
            body,
        };
        let json = Encoded::new("k 1", &incoming, SystemTime::UNIX_EPOCH).finish(7);
        serde_json::from_slice(&json).expect("record is valid JSON")
    }

    #[test]
    fn json_body_is_embedded_verbatim_with_key_order_and_numbers() {
        let body = br#"{"z":1,"a":1.50,"big":12345678901234567890}"#;
        let record = encode(Some("application/json"), body);
        assert_eq!(record.key, "k 1");
        assert_eq!(record.seq, 7);
        assert_eq!(record.received_at, "1970-01-01T00:00:00.000Z");
        assert_eq!(record.query.as_deref(), Some("a=1"));
        assert_eq!(record.headers["x-multi"], "a, b");
        assert_eq!(record.size, body.len());
        let json = Encoded::new(
            "k",
            &Incoming {
                method: &Method::PUT,
                path: "/",
                query: None,
                headers: &HeaderMap::new(),
                body,
            },
            SystemTime::UNIX_EPOCH,
        )
        .finish(1);
        let text = std::str::from_utf8(&json).expect("utf-8");
        assert!(
            text.contains(r#""body":{"z":1,"a":1.50,"big":12345678901234567890}"#),
            "{text}"
        );
        let (raw, _) = raw_body(&json).expect("raw");
        assert_eq!(raw, body);
    }

    #[test]
    fn text_body_becomes_a_string_and_binary_becomes_base64() {
        let text = encode(Some("text/plain"), "héllo\n".as_bytes());
        assert_eq!(text.body, Some(serde_json::Value::String("héllo\n".into())));
        let binary = encode(Some("application/octet-stream"), &[0xff, 0x00, 0xfe]);
        assert_eq!(binary.body, None);
        assert_eq!(binary.body_base64.as_deref(), Some("/wD+"));
    }

    #[test]
    fn a_json_content_type_is_recognised_in_any_case_with_parameters_and_suffixes() {
        // `"1"` does not look like JSON by itself: only the content type makes it a JSON body.
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/problem+json ;q=1",
            "text/JSON",
            "application/vnd.api+JSON",
        ] {
            let record = encode(Some(ct), b"1");
            assert_eq!(record.body, Some(serde_json::json!(1)), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/jsonl",
            "application/json-seq",
            "json",
        ] {
            let record = encode(Some(ct), b"1");
            assert_eq!(record.body, Some(serde_json::json!("1")), "{ct}");
        }
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for text in [
            "",
            "plain",
            "application/json; charset=utf-8",
            "quote \" and backslash \\",
            "tab\tnew line\ncr\r nul\u{0} esc\u{1b} del\u{7f}",
            "héllo ☃ 𝄞",
            "/callbacks/a%2Fb?x=1&y=\"2\"",
            "a long header value with no escapes at all, longer than eight bytes",
            "high bytes ÿ€ and 0x7f \u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f} need none",
        ] {
            let mut ours = Vec::new();
            write_json_str(&mut ours, text);
            let theirs = serde_json::to_vec(text).expect("serialise");
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "{text:?}"
            );
        }
        // Each escaped byte at every offset of a 20-byte string (both the eight-byte and the
        // byte-by-byte part of the scan).
        for special in ['"', '\\', '\n', '\u{0}', '\u{1f}'] {
            for at in 0..20 {
                let mut text: String = "abcdefghijklmnopqrst".into();
                text.replace_range(at..=at, &special.to_string());
                let mut ours = Vec::new();
                write_json_str(&mut ours, &text);
                assert_eq!(
                    ours,
                    serde_json::to_vec(&text).expect("serialise"),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn invalid_json_with_json_content_type_is_kept_as_text() {
        let record = encode(Some("application/json"), b"{not json");
        assert_eq!(
            record.body,
            Some(serde_json::Value::String("{not json".into()))
        );
    }

    #[test]
    fn raw_body_returns_the_exact_bytes_for_every_kind() {
        for (ct, body) in [
            (Some("text/plain"), "line \"quoted\"\n".as_bytes().to_vec()),
            (Some("application/octet-stream"), vec![0, 159, 146, 150]),
            (Some("application/json"), b"\"just a string\"".to_vec()),
            (None, b"{\n  \"pretty\": true\n}\n".to_vec()),
            (Some("application/json"), b"  [1, 2.0]  ".to_vec()),
        ] {
            let mut headers = HeaderMap::new();
            if let Some(ct) = ct {
                headers.insert(header::CONTENT_TYPE, ct.parse().expect("header"));
            }
            let incoming = Incoming {
                method: &Method::POST,
                path: "/",
                query: None,
                headers: &headers,
                body: &body,
            };
            let json = Encoded::new("k", &incoming, SystemTime::now()).finish(1);
            let (raw, content_type) = raw_body(&json).expect("raw");
            assert_eq!(raw, body, "content type {ct:?}");
            assert_eq!(content_type.as_deref(), ct);
        }
    }
}
