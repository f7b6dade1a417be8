//! Benchmarks of the sink's hot paths, through the real router in-process.
//!
//! Every request goes through `sink.router()` with `tower::ServiceExt::oneshot`: routing,
//! extractors, the store, the log and the response body are all measured; no socket is opened,
//! so the numbers are our code's, not the network's.
//!
//! # Groups
//! - `ingest` — `POST /callbacks/{unique key}` with a ~1 KB JSON body, in callbacks per second.
//!   `in_memory` is the store alone. `persistent` has a data directory (fsync every 1 s): each
//!   answer waits for the log writer thread's ack, so one post in flight pays a thread round
//!   trip. `persistent_x16` keeps 16 posts in flight, which the writer acks as one batch (group
//!   commit): the throughput a busy system under test sees.
//! - `retrieve` — `GET /callbacks/{key}` of a random existing key with 1,000 vs 100,000 keys
//!   stored: a lookup is one hash-map hit whatever the store's size, so 100× the keys costs about
//!   the same (a little more: the bigger store misses the CPU cache more often), not 100× more.
//! - `list_prefix` — `GET /callbacks?prefix=run-42/` (100 keys under it) with 1,000 vs 100,000 keys
//!   stored in 100-key prefixes: the two should cost the same, because the ordered key index is
//!   ranged over the prefix's keys only, never scanned whole.
//! - `wait_wakeup` — from sending a callback to a long-poll `GET /callbacks/{key}?wait=10s` that
//!   was already waiting for it having its answer: the latency a test that waits on the sink adds.
//!   `other_thread` has the waiter on a worker thread, as behind a served sink, so it includes the
//!   OS waking threads; `same_thread` runs both on one thread: the sink's own wake-up path alone.
//!
//! # Running
//! `cargo bench -p sink --bench store` runs everything (about a minute on 2 cores, plus the build);
//! add a filter to run part of it, e.g. `cargo bench -p sink --bench store -- retrieve`.
//! Criterion prints its regression estimate; medians and the rest are in
//! `target/criterion/{group}/{benchmark}/new/estimates.json`. `cargo test -p sink --benches` runs
//! each benchmark once, unoptimised, as a smoke test.

use std::{
    ops::Range,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header::CONTENT_TYPE},
};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use sink::{Config, FsyncPolicy, Sink};
use tokio::runtime::Runtime;
use tower::ServiceExt;

/// Keys per prefix in the lookup stores; `list_prefix` answers with this many keys.
const KEYS_PER_PREFIX: u32 = 100;
/// Posts in flight at once in `ingest/persistent_x16`.
const IN_FLIGHT: u64 = 16;

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = ingest, lookups, wait_wakeup
}
criterion_main!(benches);

fn ingest(c: &mut Criterion) {
    let rt = runtime();
    let body = callback_body();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    // A fresh sink per sample keeps memory bounded and every key unique.
    group.bench_function("in_memory", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let body = body.clone();
            async move {
                let sink = open(None).await;
                let router = sink.router();
                let start = Instant::now();
                for i in 0..iters {
                    post(&router, &format!("ingest-{i}"), body.clone()).await;
                }
                let elapsed = start.elapsed();
                close(sink).await;
                elapsed
            }
        });
    });
    group.bench_function("persistent", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let body = body.clone();
            async move {
                let dir = tempfile::tempdir().expect("failed to create a temporary data dir");
                let sink = open(Some(dir.path())).await;
                let router = sink.router();
                let start = Instant::now();
                for i in 0..iters {
                    post(&router, &format!("ingest-{i}"), body.clone()).await;
                }
                let elapsed = start.elapsed();
                close(sink).await;
                elapsed
            }
        });
    });
    group.throughput(Throughput::Elements(IN_FLIGHT));
    group.bench_function(format!("persistent_x{IN_FLIGHT}"), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let body = body.clone();
            async move {
                let dir = tempfile::tempdir().expect("failed to create a temporary data dir");
                let sink = open(Some(dir.path())).await;
                let router = sink.router();
                let start = Instant::now();
                for i in 0..iters {
                    let keys = (0..IN_FLIGHT).map(|j| format!("ingest-{i}-{j}"));
                    let posts = keys.map(|key| {
                        let (router, body) = (router.clone(), body.clone());
                        async move { post(&router, &key, body).await }
                    });
                    join_all(posts).await;
                }
                let elapsed = start.elapsed();
                close(sink).await;
                elapsed
            }
        });
    });
    group.finish();
}

/// `retrieve` and `list_prefix` share their two preloaded stores (building 100,000 keys is the
/// slow part of setting them up).
fn lookups(c: &mut Criterion) {
    let rt = runtime();
    let body = callback_body();
    // Prefixes `run-40/` … `run-49/` (1,000 keys) and `run-0/` … `run-999/` (100,000 keys): both
    // hold `run-42/`, with the same 100 keys.
    let stores = [40..50, 0..1000].map(|prefixes| {
        let sink = rt.block_on(preload(prefixes.clone(), body.clone()));
        (prefixes, sink)
    });

    let mut group = c.benchmark_group("retrieve");
    for (prefixes, sink) in &stores {
        let router = sink.router();
        let stored = prefixes.len() as u32 * KEYS_PER_PREFIX;
        let mut rng = SplitMix64(u64::from(stored));
        group.bench_function(BenchmarkId::from_parameter(stored_label(stored)), |b| {
            b.to_async(&rt).iter(|| {
                let uri = random_key_uri(&mut rng, prefixes);
                let router = router.clone();
                async move {
                    let (status, body) = send(&router, get(&uri)).await;
                    assert_eq!(status, StatusCode::OK, "GET {uri}");
                    body
                }
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("list_prefix");
    let uri = "/callbacks?prefix=run-42/";
    for (prefixes, sink) in &stores {
        let router = sink.router();
        let stored = prefixes.len() as u32 * KEYS_PER_PREFIX;
        let (status, listed) = rt.block_on(send(&router, get(uri)));
        let listed: serde_json::Value = serde_json::from_slice(&listed).expect("list is JSON");
        assert_eq!(status, StatusCode::OK, "GET {uri}: {listed}");
        assert_eq!(
            listed["keys"].as_array().map(Vec::len),
            Some(KEYS_PER_PREFIX as usize),
            "GET {uri} should list every key of the prefix"
        );
        group.bench_function(BenchmarkId::from_parameter(stored_label(stored)), |b| {
            b.to_async(&rt)
                .iter(|| async { send(&router, get(uri)).await.1 });
        });
    }
    group.finish();

    for (_, sink) in stores {
        rt.block_on(close(sink));
    }
}

fn wait_wakeup(c: &mut Criterion) {
    let body = callback_body();
    let mut group = c.benchmark_group("wait_wakeup");
    // The waiter is a task on a worker thread, as behind a served sink: the time includes the OS
    // waking that thread, and then this one.
    let multi = runtime();
    group.bench_function("other_thread", |b| {
        b.to_async(&multi)
            .iter_custom(|iters| wake_ups(iters, body.clone()));
    });
    // Waiter and poster share one thread: only the sink's own notify-and-answer path remains.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("failed to build the Tokio runtime");
    group.bench_function("same_thread", |b| {
        b.to_async(&single)
            .iter_custom(|iters| wake_ups(iters, body.clone()));
    });
    group.finish();
}

/// `iters` times: a long-poll starts and registers, then a POST answers it. Only the time from
/// the POST to the long-poll's answer is counted, not spawning the waiter nor its registration.
async fn wake_ups(iters: u64, body: Bytes) -> Duration {
    let sink = open(None).await;
    let router = sink.router();
    let mut measured = Duration::ZERO;
    for i in 0..iters {
        let key = format!("wake-{i}");
        let waiter = tokio::spawn({
            let router = router.clone();
            let uri = format!("/callbacks/{key}?wait=10s");
            async move { send(&router, get(&uri)).await.0 }
        });
        wait_until_waiting(&router).await;
        let start = Instant::now();
        post(&router, &key, body.clone()).await;
        let status = waiter.await.expect("the waiter task panicked");
        measured += start.elapsed();
        assert_eq!(
            status,
            StatusCode::OK,
            "the long-poll of {key} did not answer"
        );
    }
    close(sink).await;
    measured
}

/// Two workers, like the 2-core machine these numbers are quoted for; `block_on` drives the
/// benchmark itself on the calling thread.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("failed to build the Tokio runtime")
}

/// Opens an in-memory sink, or a persistent one in `data_dir`. Must run inside the runtime.
async fn open(data_dir: Option<&std::path::Path>) -> Sink {
    Sink::open(Config {
        data_dir: data_dir.map(Into::into),
        fsync: FsyncPolicy::Every(Duration::from_secs(1)),
        // Criterion decides how many callbacks a sample posts; the default cap must not answer 507.
        max_callbacks: usize::MAX,
        ..Config::default()
    })
    .await
    .expect("failed to open the sink")
}

async fn close(sink: Sink) {
    sink.close().await.expect("failed to close the sink");
}

/// A store of `KEYS_PER_PREFIX` keys under each prefix `run-{p}/`, posted through the router.
async fn preload(prefixes: Range<u32>, body: Bytes) -> Sink {
    let sink = open(None).await;
    let router = sink.router();
    // Spread over the workers: building 100,000 keys one by one is slow in `cargo test` builds.
    let loaders = prefixes.map(|p| {
        let (router, body) = (router.clone(), body.clone());
        tokio::spawn(async move {
            for i in 0..KEYS_PER_PREFIX {
                post(&router, &format!("run-{p}/cb-{i}"), body.clone()).await;
            }
        })
    });
    for loader in join_all(loaders).await {
        loader.expect("a preloading task panicked");
    }
    sink
}

/// The path of a uniformly chosen key of a store made by [`preload`].
fn random_key_uri(rng: &mut SplitMix64, prefixes: &Range<u32>) -> String {
    let r = rng.next();
    let p = prefixes.start + (r as u32) % prefixes.len() as u32;
    let i = ((r >> 32) as u32) % KEYS_PER_PREFIX;
    format!("/callbacks/run-{p}%2Fcb-{i}")
}

fn stored_label(stored: u32) -> String {
    format!("{}k_stored", stored / 1000)
}

/// Polls `/healthz` until a long-poll is registered, so the POST cannot overtake it.
async fn wait_until_waiting(router: &Router) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = send(router, get("/healthz")).await;
        let health: serde_json::Value = serde_json::from_slice(&body).expect("healthz is JSON");
        if health["waiting"].as_u64() > Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no long-poll registered within 10 s: {health}"
        );
        tokio::task::yield_now().await;
    }
}

async fn post(router: &Router, key: &str, body: Bytes) {
    let request = Request::post(format!("/callbacks/{}", sink::encode_key(key)))
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("a valid request");
    let (status, answer) = send(router, request).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "POST {key}: {}",
        String::from_utf8_lossy(&answer)
    );
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .body(Body::empty())
        .expect("a valid request")
}

/// One request through the router, with its whole response body read.
async fn send(router: &Router, request: Request<Body>) -> (StatusCode, Bytes) {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("failed to read the response body");
    (status, body)
}

/// A ~1 KB callback as a payment or job service might send it. The key comes from the path, so
/// one body serves every post.
fn callback_body() -> Bytes {
    let items: Vec<_> = (0..8)
        .map(|i| {
            serde_json::json!({
                "sku": format!("SKU-{i:05}"),
                "name": format!("item number {i}"),
                "quantity": i + 1,
                "unit_price": "19.99",
                "tags": ["bench", "callback"],
            })
        })
        .collect();
    let body = serde_json::json!({
        "request_id": "req-0000000000000000",
        "status": "succeeded",
        "response": {
            "order_id": "ord-1234567890",
            "currency": "EUR",
            "total": "1234.56",
            "items": items,
            "completed_at": "2026-01-01T00:00:00.000Z",
        },
    });
    let bytes = Bytes::from(body.to_string());
    assert!(
        (900..=1200).contains(&bytes.len()),
        "the callback body is {} bytes, not ~1 KB: resize it",
        bytes.len()
    );
    bytes
}

/// A tiny deterministic generator (SplitMix64), so key choice costs nanoseconds and needs no
/// dependency; seeded per benchmark so runs are comparable.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
