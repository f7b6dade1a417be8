//! A typed client for a running sink, over reqwest.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::{record::Record, stubs::StubInfo};

/// Characters escaped when a key is put in a path: all but RFC 3986's unreserved ones.
const KEY_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The longest single long-poll the client sends; longer waits are several in a row.
const MAX_POLL: Duration = Duration::from_secs(60);

/// A key, percent-encoded for use in a path.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_ESCAPE).to_string()
}

/// What went wrong talking to a sink.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be sent or its answer read.
    #[error("failed to reach the sink: {0}")]
    Http(#[from] reqwest::Error),
    /// The sink answered with an error body.
    #[error("the sink answered {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error's `code`.
        code: String,
        /// The error's `message`.
        message: String,
    },
    /// The sink answered, but not with JSON this client can read.
    #[error("the sink's answer could not be read as {what}: {detail}")]
    Decode {
        /// What was expected.
        what: &'static str,
        /// What the JSON parser said.
        detail: String,
    },
    /// The awaited callbacks did not all arrive in time.
    #[error("waited {waited:?} for {wanted} callback(s) under key {key:?}; {arrived} arrived")]
    Timeout {
        /// The key waited on.
        key: String,
        /// How long the client waited.
        waited: Duration,
        /// How many were wanted.
        wanted: usize,
        /// How many had arrived when the wait ended.
        arrived: usize,
    },
}

/// The sink's answer to a stored callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The key it was stored under.
    pub key: String,
    /// Its position under that key.
    pub seq: u64,
}

/// One record from [`Client::watch_prefix`], with its sink-wide id.
#[derive(Debug, Clone, PartialEq)]
pub struct Watched {
    /// Its place in the sink-wide sequence: pass the last one seen as `after` to resume.
    pub id: u64,
    /// The record (its `key` says which key it is under).
    pub record: Record,
}

/// The records of [`Client::watch_prefix`], past then live, in id order. It ends when the
/// sink closes the stream (it shut down): resume with the last [`Watched::id`].
pub type WatchStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Watched, ClientError>> + Send>>;

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct StubList {
    stubs: Vec<StubInfo>,
}

#[derive(Deserialize)]
struct AllBody {
    callbacks: Vec<Record>,
}

/// A client for a sink at `base_url` (`http://127.0.0.1:7700`).
///
/// ```no_run
/// # async fn demo() -> Result<(), sink::ClientError> {
/// use std::time::Duration;
/// let client = sink::Client::new("http://127.0.0.1:7700");
/// let record = client.wait_for("job-42", Duration::from_secs(30)).await?;
/// println!("job 42 called back with {:?}", record.body);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the sink at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base_url.into().trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` on reads and deletes (a sink started with `--token`).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The sink's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The URL a system under test should call back for `key`.
    pub fn callback_url(&self, key: &str) -> String {
        format!("{}/callbacks/{}", self.base, encode_key(key))
    }

    fn get(&self, url: String) -> reqwest::RequestBuilder {
        let req = self.http.get(url);
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Posts `body` as JSON under `key`, as a system under test would.
    pub async fn post<T: Serialize + ?Sized>(
        &self,
        key: &str,
        body: &T,
    ) -> Result<Ack, ClientError> {
        let response = self
            .http
            .post(self.callback_url(key))
            .json(body)
            .send()
            .await?;
        read_json(response).await
    }

    /// The latest record of `key`, or `None` if it has none.
    pub async fn latest(&self, key: &str) -> Result<Option<Record>, ClientError> {
        let response = self.get(self.callback_url(key)).send().await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(read_json(response).await?))
    }

    /// Every record of `key`, oldest first.
    pub async fn all(&self, key: &str) -> Result<Vec<Record>, ClientError> {
        let response = self
            .get(format!("{}/all", self.callback_url(key)))
            .send()
            .await?;
        Ok(read_json::<AllBody>(response).await?.callbacks)
    }

    /// Waits (long-polling, never sleeping) until `key` has a record, at most `timeout`.
    pub async fn wait_for(&self, key: &str, timeout: Duration) -> Result<Record, ClientError> {
        let mut records = self.wait_for_count(key, 1, timeout).await?;
        Ok(records
            .pop()
            .expect("wait_for_count returns at least one record"))
    }

    /// Waits until `key` has at least `count` records and returns them all, oldest first.
    pub async fn wait_for_count(
        &self,
        key: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Record>, ClientError> {
        let count = count.max(1);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let poll = left.min(MAX_POLL);
            let url = format!(
                "{}/all?wait={}ms&count={count}",
                self.callback_url(key),
                poll.as_millis()
            );
            let response = self
                .get(url)
                .timeout(poll + Duration::from_secs(30))
                .send()
                .await?;
            match read_json::<AllBody>(response).await {
                Ok(body) => return Ok(body.callbacks),
                Err(ClientError::Api { code, .. }) if code == "timeout" && !left.is_zero() => {
                    if tokio::time::Instant::now() >= deadline {
                        let arrived = self.all(key).await.map(|r| r.len()).unwrap_or(0);
                        return Err(ClientError::Timeout {
                            key: key.to_owned(),
                            waited: timeout,
                            wanted: count,
                            arrived,
                        });
                    }
                }
                Err(ClientError::Api { code, .. }) if code == "timeout" => {
                    let arrived = self.all(key).await.map(|r| r.len()).unwrap_or(0);
                    return Err(ClientError::Timeout {
                        key: key.to_owned(),
                        waited: timeout,
                        wanted: count,
                        arrived,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Every record under `prefix` (`GET /watch`) on one connection: those stored already, then
    /// each new one as it arrives, strictly after the id `after` when given (the last
    /// [`Watched::id`] of an earlier stream: nothing is missed, nothing repeated).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sink::ClientError> {
    /// use futures_util::StreamExt as _;
    /// let client = sink::Client::new("http://127.0.0.1:7700");
    /// let mut stream = client.watch_prefix("run-7/", None).await?;
    /// while let Some(watched) = stream.next().await {
    ///     let watched = watched?;
    ///     println!("{} called back (id {})", watched.record.key, watched.id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        after: Option<u64>,
    ) -> Result<WatchStream, ClientError> {
        let mut req = self.get(format!("{}/watch?prefix={}", self.base, encode_key(prefix)));
        if let Some(after) = after {
            req = req.header("Last-Event-ID", after.to_string());
        }
        let response = req.send().await?;
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        let state = (Box::pin(response.bytes_stream()), SseBuffer::default());
        Ok(Box::pin(futures_util::stream::try_unfold(
            state,
            |(mut body, mut buffer)| async move {
                use futures_util::StreamExt as _;
                loop {
                    if let Some((id, data)) = buffer.next_event() {
                        let record = decode::<Record>(data.as_bytes())?;
                        return Ok(Some((Watched { id, record }, (body, buffer))));
                    }
                    match body.next().await {
                        Some(chunk) => buffer.push(&chunk?),
                        None => return Ok(None),
                    }
                }
            },
        )))
    }

    /// Forgets `key`.
    pub async fn delete(&self, key: &str) -> Result<(), ClientError> {
        self.send_delete(self.callback_url(key)).await
    }

    /// Forgets every key under `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), ClientError> {
        self.send_delete(format!(
            "{}/callbacks?prefix={}",
            self.base,
            encode_key(prefix)
        ))
        .await
    }

    fn stub_url(&self, id: &str) -> String {
        format!("{}/stubs/{}", self.base, encode_key(id))
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sets stub `id` (`PUT /stubs/{id}`, a [`Stub`](crate::Stub)): from now on it answers its key's callbacks. A bad
    /// stub is refused with `422 invalid_fields`, its message listing every problem.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), sink::ClientError> {
    /// use sink::{Stub, StubResponse};
    /// let client = sink::Client::new("http://127.0.0.1:7700");
    /// let flaky = Stub::for_key("job-42", [StubResponse::status(503).times(2), StubResponse::status(200)]);
    /// client.stub("flaky", &flaky).await?;
    /// # Ok(()) }
    /// ```
    /// `stub` is a [`Stub`] or any JSON that serialises to one (the sink validates it).
    pub async fn stub<T: Serialize + ?Sized>(
        &self,
        id: &str,
        stub: &T,
    ) -> Result<StubInfo, ClientError> {
        let response = self
            .authed(self.http.put(self.stub_url(id)))
            .json(stub)
            .send()
            .await?;
        read_json(response).await
    }

    /// Stub `id` with its hits, or `None` if there is none.
    pub async fn stub_info(&self, id: &str) -> Result<Option<StubInfo>, ClientError> {
        let response = self.get(self.stub_url(id)).send().await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(read_json(response).await?))
    }

    /// Every stub, by id.
    pub async fn stubs(&self) -> Result<Vec<StubInfo>, ClientError> {
        let response = self.get(format!("{}/stubs", self.base)).send().await?;
        Ok(read_json::<StubList>(response).await?.stubs)
    }

    /// Deletes stub `id` (`404 not_found` if there is none).
    pub async fn delete_stub(&self, id: &str) -> Result<(), ClientError> {
        self.send_delete(self.stub_url(id)).await
    }

    /// Sets verifier `id` (`PUT /verifiers/{id}`): callbacks under its prefix get a `signature`.
    pub async fn verify(&self, id: &str, verifier: &NewVerifier) -> Result<(), ClientError> {
        let response = self
            .authed(
                self.http
                    .put(format!("{}/verifiers/{}", self.base, encode_key(id))),
            )
            .json(verifier)
            .send()
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(api_error(response).await)
        }
    }

    /// Removes verifier `id`.
    pub async fn delete_verifier(&self, id: &str) -> Result<(), ClientError> {
        self.send_delete(format!("{}/verifiers/{}", self.base, encode_key(id)))
            .await
    }

    async fn send_delete(&self, url: String) -> Result<(), ClientError> {
        let req = self.http.delete(url);
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let response = req.send().await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(api_error(response).await)
        }
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ClientError> {
    if !response.status().is_success() {
        return Err(api_error(response).await);
    }
    let bytes = response.bytes().await?;
    decode(&bytes)
}

/// Parses what the sink served, however deeply its bodies nest: the sink stores any JSON body
/// verbatim (up to `--max-body`), so the client lifts serde_json's nesting limit and grows its
/// stack as it goes rather than failing at 128 levels.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ClientError> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    json.disable_recursion_limit();
    let value = T::deserialize(serde_stacker::Deserializer::new(&mut json));
    value.map_err(|e| ClientError::Decode {
        what: std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("JSON"),
        detail: e.to_string(),
    })
}

async fn api_error(response: reqwest::Response) -> ClientError {
    let status = response.status().as_u16();
    match response.json::<ErrorBody>().await {
        Ok(body) => ClientError::Api {
            status,
            code: body.error.code,
            message: body.error.message,
        },
        Err(e) => ClientError::Http(e),
    }
}

/// The `text/event-stream` of `GET /watch` as it arrives: whole `callback` events come out
/// (keep-alive comments and other events are skipped).
#[derive(Debug, Default)]
struct SseBuffer {
    text: String,
}

impl SseBuffer {
    fn push(&mut self, chunk: &[u8]) {
        self.text
            .push_str(&String::from_utf8_lossy(chunk).replace("\r\n", "\n"));
    }

    /// The next whole `callback` event: its id and data.
    fn next_event(&mut self) -> Option<(u64, String)> {
        while let Some(end) = self.text.find("\n\n") {
            let block: String = self.text.drain(..end + 2).collect();
            let (mut event, mut id, mut data) = ("message", None, Vec::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<u64>().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if let (true, Some(id), false) = (event == "callback", id, data.is_empty()) {
                return Some((id, data.join("\n")));
            }
        }
        None
    }
}

/// A signature verifier for [`Client::verify`]; its `Debug` redacts the secret.
#[derive(Clone, Default, Serialize)]
pub struct NewVerifier {
    /// Keys it covers (the longest matching prefix applies).
    pub prefix: String,
    /// `github`, `stripe`, `standard-webhooks`, `slack`, `shopify` or `hmac-sha256`.
    pub scheme: String,
    /// The signing secret.
    pub secret: String,
    /// Timestamp tolerance (default `5m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<String>,
    /// Answer invalid signatures `401`.
    pub reject: bool,
    /// `hmac-sha256`: the signature's header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `hmac-sha256`: `hex` or `base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// `hmac-sha256`: text before the signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_prefix: Option<String>,
}

impl std::fmt::Debug for NewVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewVerifier")
            .field("prefix", &self.prefix)
            .field("scheme", &self.scheme)
            .field("secret", &"***")
            .field("tolerance", &self.tolerance)
            .field("reject", &self.reject)
            .finish_non_exhaustive()
    }
}
