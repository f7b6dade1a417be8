//! The harness's routes through `sink::serve`, the accept loop `eventual serve` uses: HTTP/2 with
//! prior knowledge beside HTTP/1.1 (a request and the live event stream on one connection), and
//! `400` for junk.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::helpers::spawn_app;

const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn runs_and_their_event_stream_share_one_http2_connection() {
    let app = spawn_app(|_| {}).await;
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("HTTP/2 handshake with prior knowledge");
    tokio::spawn(conn);

    let events = h2
        .send_request(
            Request::get(app.url("/api/events"))
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut events = events.into_body();

    let created = h2
        .send_request(
            Request::post(app.url("/api/runs"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(
                    json!({ "username": "ann", "env_id": 2, "tests": ["pass.sh"] }).to_string(),
                )))
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let run: Value =
        serde_json::from_slice(&created.into_body().collect().await.unwrap().to_bytes()).unwrap();

    let mut seen = String::new();
    while !seen.contains(&format!("\"id\":{}", run["id"])) {
        let frame = tokio::time::timeout(PATIENCE, events.frame())
            .await
            .expect("an event in time")
            .expect("the stream stays open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            seen.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    assert!(seen.contains("event: run"), "{seen}");
    // A follower holds a graceful stop (`serve` ends the streams first, this helper does not).
    drop((events, h2));
    app.stop().await;
}

#[tokio::test]
async fn junk_bytes_get_400_then_close() {
    let app = spawn_app(|_| {}).await;
    let mut tcp = TcpStream::connect(app.addr).await.unwrap();
    let junk: Vec<u8> = (0..512u32).map(|i| (i * 37 % 251) as u8).collect();
    tcp.write_all(&junk).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    assert_eq!(app.get("/api/runs").await.status(), 200);
}
