//! Broken request bodies, written by hand over raw TCP (an HTTP client would refuse to send
//! them): they are the client's fault, so `400 invalid_body`, and nothing is stored.

use std::time::Duration;

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::helpers::*;

/// Writes `request` on a new connection, closes the write half (a body cut short stays short)
/// and answers the status and the JSON body of the response.
async fn send_raw(app: &TestApp, request: &[u8]) -> (u16, Value) {
    let addr = app
        .sink
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut tcp = TcpStream::connect(&addr)
        .await
        .expect("connect to the sink");
    tcp.write_all(request).await.expect("write the request");
    tcp.shutdown().await.expect("close the write half");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("the sink answers and closes within 10 s")
        .expect("read the response");
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in the answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("the answer's body is not JSON ({e}): {text:?}"));
    (status, json)
}

fn chunked(body: &str) -> Vec<u8> {
    format!(
        "POST /callbacks/broken HTTP/1.1\r\nHost: sink\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
    )
    .into_bytes()
}

async fn assert_invalid_body(request: &[u8], what: &str) {
    let app = spawn_app().await;
    let (status, answer) = send_raw(&app, request).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_body")),
        "{what}: answered {status} {answer}"
    );
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Content-Length") && message.contains("chunked"),
        "{what}: the message should say what to send: {message}"
    );
    assert_eq!(
        app.get("/callbacks/broken").await.status(),
        404,
        "{what}: something was stored"
    );
}

#[tokio::test]
async fn a_bad_chunk_size_is_a_400_invalid_body() {
    assert_invalid_body(
        &chunked("zz\r\n{}\r\n0\r\n\r\n"),
        "a chunk size that is not hex",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_chunk_length_is_a_400_invalid_body() {
    assert_invalid_body(
        &chunked("FFFFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n"),
        "a chunk length that overflows",
    )
    .await;
}

#[tokio::test]
async fn a_truncated_chunked_body_is_a_400_invalid_body() {
    assert_invalid_body(
        &chunked("20\r\n{\"cut\": \"short"),
        "a chunked body cut short",
    )
    .await;
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_a_400_invalid_body() {
    assert_invalid_body(
        b"POST /callbacks/broken HTTP/1.1\r\nHost: sink\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\": 1}",
        "a body shorter than its Content-Length",
    )
    .await;
}
