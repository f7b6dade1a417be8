//! How the sink accepts connections: junk gets `400`, slow and silent clients are closed after the
//! header-read timeout while others are served, and HTTP/2 with prior knowledge carries many
//! long-polls, SSE and graceful shutdown on one connection.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, client::conn::http2::SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::{
    helpers::{Config, TestApp, spawn_app, spawn_app_with},
    waiting::wait_until_waiting,
};

/// Longer than anything here should take, even on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn addr(app: &TestApp) -> String {
    app.sink.url().trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (EOF or reset), bounded by [`PATIENCE`].
async fn read_until_closed(tcp: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("reading from the sink: {e}"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the sink closes the connection");
    got
}

#[tokio::test]
async fn junk_bytes_get_400_then_close_and_others_are_still_served() {
    let app = spawn_app().await;
    let mut tcp = TcpStream::connect(addr(&app)).await.unwrap();
    let junk: Vec<u8> = (0..512u32).map(|i| (i * 37 % 251) as u8).collect();
    tcp.write_all(&junk).await.unwrap();
    let answer = read_until_closed(&mut tcp).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400 "),
        "junk is answered 400: {answer:?}"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
}

/// A sink closing connections that have not sent a whole header within 300 ms.
async fn impatient_sink() -> TestApp {
    let mut config = Config::default();
    config.serving.header_read_timeout = Duration::from_millis(300);
    spawn_app_with(config).await
}

#[tokio::test]
async fn a_client_sending_its_header_byte_by_byte_is_closed_after_the_timeout() {
    let app = impatient_sink().await;
    let tcp = TcpStream::connect(addr(&app)).await.unwrap();
    let (mut reader, mut writer) = tcp.into_split();
    // A header that never ends, a byte every 100 ms: only the timeout can end this connection.
    let slow = tokio::spawn(async move {
        let start = b"GET /healthz HTTP/1.1\r\nHost: sink\r\nX-Slow: ";
        for &byte in start.iter().chain(std::iter::repeat(&b'a')) {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Everyone else is served meanwhile.
    assert_eq!(app.get("/healthz").await.status(), 200);
    let answer = read_until_closed(&mut reader).await;
    assert!(
        answer.is_empty(),
        "closed without an answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    tokio::time::timeout(PATIENCE, slow)
        .await
        .expect("the slow client's writes fail once closed")
        .unwrap();
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_timeout() {
    let app = impatient_sink().await;
    let mut tcp = TcpStream::connect(addr(&app)).await.unwrap();
    assert!(read_until_closed(&mut tcp).await.is_empty());
    // An HTTP/2 preface cut short is closed too (it never becomes a request).
    let mut tcp = TcpStream::connect(addr(&app)).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    assert!(read_until_closed(&mut tcp).await.is_empty());
}

/// One HTTP/2 connection (prior knowledge, no TLS) to `app`.
async fn h2_connection(app: &TestApp) -> SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr(app)).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("HTTP/2 handshake with prior knowledge");
    tokio::spawn(conn);
    sender
}

/// Sends `request` on `h2`; returns the status and the whole body.
async fn h2_send(h2: &mut SendRequest<Full<Bytes>>, request: Request<Full<Bytes>>) -> (u16, Value) {
    let response = h2
        .send_request(request)
        .await
        .expect("the request is answered");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn get(app: &TestApp, path: &str) -> Request<Full<Bytes>> {
    Request::get(app.url(path)).body(Full::default()).unwrap()
}

#[tokio::test]
async fn a_hundred_long_polls_share_one_http2_connection_and_are_answered_by_posts() {
    let app = spawn_app().await;
    let h2 = h2_connection(&app).await;
    let waiters: Vec<_> = (0..100)
        .map(|i| {
            let mut h2 = h2.clone();
            let request = get(&app, &format!("/callbacks/h2-{i}?wait=60s"));
            tokio::spawn(async move { h2_send(&mut h2, request).await })
        })
        .collect();
    wait_until_waiting(&app, 100).await;
    for i in 0..100 {
        // The posts travel on the same connection.
        let request = Request::post(app.url(&format!("/callbacks/h2-{i}")))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(json!({ "n": i }).to_string())))
            .unwrap();
        let (status, _) = h2_send(&mut h2.clone(), request).await;
        assert_eq!(status, 200, "post {i}");
    }
    for (i, waiter) in waiters.into_iter().enumerate() {
        let (status, record) = tokio::time::timeout(PATIENCE, waiter)
            .await
            .expect("the long-poll is answered")
            .unwrap();
        assert_eq!(status, 200, "long-poll {i}: {record}");
        assert_eq!(
            record["body"]["n"], i,
            "long-poll {i} gets its own callback"
        );
    }
}

#[tokio::test]
async fn sse_streams_over_http2() {
    let app = spawn_app().await;
    let mut h2 = h2_connection(&app).await;
    let response = h2
        .send_request(get(&app, "/callbacks/ev2/events"))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    app.post_json("ev2", json!({"n": 1})).await;
    let mut seen = String::new();
    while !seen.contains("event: callback") {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("an event in time")
            .expect("the stream stays open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    assert!(
        seen.contains("\"n\":1"),
        "the callback is in the event: {seen}"
    );
}

#[tokio::test]
async fn shutdown_answers_http2_long_polls_503_shutting_down() {
    let app = spawn_app().await;
    let h2 = h2_connection(&app).await;
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let mut h2 = h2.clone();
            let request = get(&app, &format!("/callbacks/bye-{i}?wait=60s"));
            tokio::spawn(async move { h2_send(&mut h2, request).await })
        })
        .collect();
    wait_until_waiting(&app, 3).await;
    tokio::time::timeout(PATIENCE, app.sink.stop())
        .await
        .expect("the sink stops with HTTP/2 long-polls in flight");
    for waiter in waiters {
        let (status, body) = waiter.await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "shutting_down");
    }
}
