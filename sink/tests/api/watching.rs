//! `GET /watch?prefix=P`: one SSE stream of every record under a prefix, past then live, with
//! sink-wide ids that `Last-Event-ID` resumes after.

use std::{
    collections::{BTreeSet, HashSet},
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use futures_util::{Stream, StreamExt as _};
use serde_json::{Value, json};
use testkit::sse::SseParser;

use crate::helpers::{Config, TestApp, error_of, spawn_app, spawn_app_with};

/// How long a test waits for an event that must come.
const PATIENCE: Duration = Duration::from_secs(20);

/// An open `GET /watch` stream.
struct Watching {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: SseParser,
}

/// One `callback` event: its id and the record.
#[derive(Debug)]
struct Seen {
    id: u64,
    record: Value,
}

impl Seen {
    fn key(&self) -> &str {
        self.record["key"].as_str().expect("the record has its key")
    }
}

async fn watch(app: &TestApp, prefix: &str, last_event_id: Option<u64>) -> Watching {
    let mut request = app.http.get(app.url("/watch")).query(&[("prefix", prefix)]);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    // No client timeout on a stream that is meant to stay open.
    let response = request
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .expect("GET /watch reaches the sink");
    assert_eq!(response.status(), 200, "GET /watch?prefix={prefix}");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    Watching {
        stream: Box::pin(response.bytes_stream()),
        parser: SseParser::default(),
    }
}

impl Watching {
    /// The next `callback` event; fails the test if none comes within [`PATIENCE`].
    async fn next(&mut self) -> Seen {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(event) = self.parser.next_event() {
                assert_eq!(event.event, "callback", "{event:?}");
                let id = event
                    .id
                    .as_deref()
                    .expect("an id")
                    .parse()
                    .expect("a numeric id");
                return Seen {
                    id,
                    record: event.json(),
                };
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.parser.push(&chunk),
                Ok(Some(Err(e))) => panic!("the watch stream failed: {e}"),
                Ok(None) => panic!("the watch stream ended"),
                Err(_) => panic!(
                    "no event within {PATIENCE:?} (buffered: {:?})",
                    self.parser.pending()
                ),
            }
        }
    }

    async fn take(&mut self, n: usize) -> Vec<Seen> {
        let mut seen = Vec::with_capacity(n);
        for _ in 0..n {
            seen.push(self.next().await);
        }
        seen
    }
}

fn keys_and_seqs(seen: &[Seen]) -> Vec<(String, u64)> {
    seen.iter()
        .map(|s| (s.key().to_owned(), s.record["seq"].as_u64().expect("seq")))
        .collect()
}

fn assert_increasing(seen: &[Seen]) {
    for pair in seen.windows(2) {
        assert!(
            pair[0].id < pair[1].id,
            "ids must increase: {} then {}",
            pair[0].id,
            pair[1].id
        );
    }
}

#[tokio::test]
async fn watch_sends_past_records_then_live_ones_and_nothing_from_other_prefixes() {
    let app = spawn_app().await;
    app.post_json("w/a", json!({"n": 1})).await;
    app.post_json("other/x", json!({"n": 0})).await;
    app.post_json("w/b", json!({"n": 2})).await;
    app.post_json("w/a", json!({"n": 3})).await;
    let mut watching = watch(&app, "w/", None).await;
    let past = watching.take(3).await;
    assert_eq!(
        keys_and_seqs(&past),
        [("w/a".into(), 1), ("w/b".into(), 1), ("w/a".into(), 2)],
        "past records in the order they arrived, none from other/"
    );
    assert_eq!(past[2].record["body"]["n"], 3);
    // Another prefix's record first, then one under the prefix: the next event is the latter.
    app.post_json("other/y", json!({})).await;
    app.post_json("wx", json!({})).await;
    app.post_json("w/c", json!({"n": 4})).await;
    let mut seen = past;
    seen.push(watching.next().await);
    assert_eq!(seen[3].key(), "w/c");
    assert_eq!(seen[3].record["body"]["n"], 4);
    assert_increasing(&seen);
}

#[tokio::test]
async fn resuming_with_last_event_id_misses_nothing_and_repeats_nothing() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.post_json(&format!("r/{i}"), json!({"i": i})).await;
    }
    let mut first = watch(&app, "r/", None).await;
    let seen = first.take(3).await;
    drop(first);
    app.post_json("r/5", json!({"i": 5})).await;
    let mut resumed = watch(&app, "r/", Some(seen[2].id)).await;
    let rest = resumed.take(3).await;
    assert_eq!(
        keys_and_seqs(&rest),
        [("r/3".into(), 1), ("r/4".into(), 1), ("r/5".into(), 1)],
        "strictly after the last id received, then the one posted while away"
    );
    assert!(rest[0].id > seen[2].id);
    app.post_json("r/6", json!({"i": 6})).await;
    assert_eq!(resumed.next().await.key(), "r/6", "and live after that");
}

#[tokio::test]
async fn a_missing_or_bad_prefix_or_last_event_id_is_400_with_the_json_error() {
    let app = spawn_app().await;
    let (code, message) = error_of(app.get("/watch").await, 400).await;
    assert_eq!(code, "missing_prefix");
    assert!(message.contains("?prefix="), "{message}");
    let long = "p".repeat(1025);
    let (code, _) = error_of(app.get(&format!("/watch?prefix={long}")).await, 400).await;
    assert_eq!(code, "invalid_prefix");
    let response = app
        .http
        .get(app.url("/watch?prefix=a"))
        .header("Last-Event-ID", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response, 400).await.0, "invalid_last_event_id");
}

#[tokio::test]
async fn a_deleted_key_is_not_sent_and_its_new_records_are() {
    let app = spawn_app().await;
    app.post_json("d/gone", json!({"old": true})).await;
    app.post_json("d/kept", json!({})).await;
    let r = app
        .http
        .delete(app.url("/callbacks/d%2Fgone"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let mut watching = watch(&app, "d/", None).await;
    assert_eq!(
        watching.next().await.key(),
        "d/kept",
        "the deleted record is not sent"
    );
    // A key deleted and posted again starts at seq 1, under a new, higher id.
    app.post_json("d/gone", json!({"old": false})).await;
    let again = watching.next().await;
    assert_eq!(
        keys_and_seqs(std::slice::from_ref(&again)),
        [("d/gone".into(), 1)]
    );
    assert_eq!(again.record["body"]["old"], false);
    let r = app
        .http
        .delete(app.url("/callbacks?prefix=d/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    app.post_json("d/gone", json!({"third": true})).await;
    let third = watching.next().await;
    assert_eq!(third.record["seq"], 1);
    assert!(third.id > again.id);
}

/// Posters run while the watcher reads, disconnects and resumes: every record arrives exactly
/// once, in increasing id order.
async fn prefix_sse_across_1000_keys_misses_nothing_during_a_reconnect(app: TestApp) {
    const KEYS: usize = 1000;
    const POSTERS: usize = 8;
    let app = Arc::new(app);
    // Half the keys are posted before the watcher drops; the other half only once it has,
    // so some land while it is away and some while it reconnects and reads.
    let (dropped_tx, dropped_rx) = tokio::sync::watch::channel(false);
    let mut posters = Vec::new();
    for p in 0..POSTERS {
        let (app, mut dropped) = (app.clone(), dropped_rx.clone());
        posters.push(tokio::spawn(async move {
            let mine: Vec<usize> = (p..KEYS).step_by(POSTERS).collect();
            let (early, late) = mine.split_at(mine.len() / 2);
            for i in early {
                let r = app
                    .post_json(&format!("many/{i:04}"), json!({"i": i}))
                    .await;
                assert_eq!(r.status(), 200);
            }
            dropped
                .wait_for(|d| *d)
                .await
                .expect("the test holds the sender");
            for i in late {
                let r = app
                    .post_json(&format!("many/{i:04}"), json!({"i": i}))
                    .await;
                assert_eq!(r.status(), 200);
            }
        }));
    }
    let mut watching = watch(&app, "many/", None).await;
    let mut seen = watching.take(KEYS / 4).await;
    drop(watching);
    dropped_tx.send(true).expect("posters listen");
    let mut resumed = watch(&app, "many/", Some(seen.last().expect("events").id)).await;
    seen.extend(resumed.take(KEYS - seen.len()).await);
    for poster in posters {
        poster.await.expect("a poster failed");
    }
    assert_increasing(&seen);
    let keys: Vec<String> = seen.iter().map(|s| s.key().to_owned()).collect();
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), KEYS, "a record came twice");
    let expected: BTreeSet<String> = (0..KEYS).map(|i| format!("many/{i:04}")).collect();
    assert_eq!(keys.iter().cloned().collect::<BTreeSet<_>>(), expected);
    // Nothing more: a marker posted last is the very next event.
    app.post_json("many/zz-last", json!({})).await;
    assert_eq!(resumed.next().await.key(), "many/zz-last", "no extra event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prefix_sse_across_1000_keys_misses_nothing_during_a_reconnect_in_memory() {
    prefix_sse_across_1000_keys_misses_nothing_during_a_reconnect(spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prefix_sse_across_1000_keys_misses_nothing_during_a_reconnect_with_fsync_always() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Config {
        data_dir: Some(dir.path().to_path_buf()),
        fsync: sink::FsyncPolicy::Always,
        ..Config::default()
    })
    .await;
    prefix_sse_across_1000_keys_misses_nothing_during_a_reconnect(app).await;
}

#[tokio::test]
async fn shutdown_ends_the_watch_stream() {
    let app = spawn_app().await;
    let mut watching = watch(&app, "s/", None).await;
    app.post_json("s/1", json!({})).await;
    assert_eq!(watching.next().await.key(), "s/1");
    let TestApp { sink, .. } = app;
    // A graceful stop waits for open streams: it finishes only if the stream ends.
    tokio::time::timeout(PATIENCE, sink.stop())
        .await
        .expect("the sink stops with a watch stream open");
    let rest = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(_)) = watching.stream.next().await {}
    })
    .await;
    assert!(rest.is_ok(), "the stream ended on shutdown");
}

#[tokio::test]
async fn client_watch_prefix_streams_records_with_their_ids_and_resumes_after_one() {
    let app = spawn_app().await;
    let client = app.sink.client();
    client.post("c/1", &json!({"n": 1})).await.expect("post");
    client.post("x/1", &json!({})).await.expect("post");
    let mut stream = client.watch_prefix("c/", None).await.expect("watch");
    let first = next(&mut stream).await;
    assert_eq!(first.record.key, "c/1");
    client.post("c/2", &json!({"n": 2})).await.expect("post");
    let second = next(&mut stream).await;
    assert_eq!(second.record.key, "c/2");
    assert!(second.id > first.id);
    drop(stream);
    let mut resumed = client
        .watch_prefix("c/", Some(first.id))
        .await
        .expect("watch");
    assert_eq!(
        next(&mut resumed).await,
        second,
        "resumes strictly after `after`"
    );
    let refused = client.watch_prefix(&"p".repeat(2000), None).await;
    assert!(
        matches!(&refused, Err(sink::ClientError::Api { status: 400, code, .. }) if code == "invalid_prefix"),
        "{:?}",
        refused.err()
    );
}

async fn next(stream: &mut sink::WatchStream) -> sink::Watched {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("a record in time")
        .expect("the stream is open")
        .expect("a record")
}
