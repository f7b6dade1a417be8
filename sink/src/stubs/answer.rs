//! [`Answer`]: the scripted response a stub gives one stored callback, as HTTP — held for its
//! delay, then sent, or the connection closed without a response.

use std::io;

use axum::{
    body::{Body, Bytes},
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use tokio_util::sync::CancellationToken;

use super::{Plan, StubResponse};
use crate::record::write_json_str;

/// Which response of which stub answers a callback (from the insert's hook, [`Plan::annotate`]).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(super) plan: Plan,
    pub(super) index: usize,
}

impl Answer {
    /// The id of the stub answering.
    pub(crate) fn stub_id(&self) -> &str {
        &self.plan.id
    }

    fn scripted(&self) -> &StubResponse {
        &self.plan.stub.responses[self.index]
    }

    /// The HTTP answer to the callback stored as `key`/`seq`, after the scripted delay.
    ///
    /// Call it once the record is durable and with no lock held: the delay is a timer, not a
    /// thread, so any number of callbacks can be held at once. Shutting down cuts the delay
    /// short (the answer is then given at once) so that a delay never holds up an exit.
    pub(crate) async fn respond(
        self,
        key: &str,
        seq: u64,
        shutdown: &CancellationToken,
    ) -> Response {
        let scripted = self.scripted();
        if let Some(delay) = scripted.delay.filter(|d| !d.is_zero()) {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => {}
            }
        }
        if scripted.drop {
            return dropped_connection();
        }
        let status = StatusCode::from_u16(scripted.status).unwrap_or(StatusCode::OK);
        let (content_type, body) = match &scripted.body {
            Some(serde_json::Value::String(text)) => {
                ("text/plain; charset=utf-8", Bytes::from(text.clone()))
            }
            Some(json) => ("application/json", Bytes::from(json.to_string())),
            None => ("application/json", self.default_body(status, key, seq)),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        for (name, value) in &scripted.headers {
            // Both were checked when the stub was put.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        response
    }

    /// `{"key","seq"}` for a 2xx, as an unstubbed callback is answered; else a JSON error saying
    /// which stub answered.
    fn default_body(&self, status: StatusCode, key: &str, seq: u64) -> Bytes {
        let mut out = Vec::with_capacity(key.len() + 128);
        if status.is_success() {
            out.extend_from_slice(b"{\"key\":");
            write_json_str(&mut out, key);
            out.extend_from_slice(format!(",\"seq\":{seq}}}").as_bytes());
        } else {
            out.extend_from_slice(b"{\"error\":{\"code\":\"stubbed\",\"message\":");
            let message = format!(
                "the callback was stored (seq {seq}), and stub {:?} answers it with {}",
                &*self.plan.id,
                status.as_u16()
            );
            write_json_str(&mut out, &message);
            out.extend_from_slice(b"}}");
        }
        out.into()
    }
}

/// A response whose body fails before its first byte: hyper then closes the connection without
/// writing the status line it had buffered, so the client sees the connection closed with no
/// response at all, as from a receiver that died.
fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(futures_util::future::ready(Err::<Bytes, _>(
        io::Error::other("stub: the connection is dropped without an answer"),
    )));
    Body::from_stream(failing).into_response()
}
