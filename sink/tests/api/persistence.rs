use serde_json::{Value, json};

use crate::helpers::*;

fn persistent(dir: &std::path::Path) -> Config {
    Config {
        data_dir: Some(dir.to_path_buf()),
        fsync: sink::FsyncPolicy::Always,
        ..Config::default()
    }
}

#[tokio::test]
async fn acknowledged_callbacks_and_deletes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let app = spawn_app_with(persistent(dir.path())).await;
        for n in 1..=3 {
            app.post_json("keep", json!({"n": n})).await;
        }
        app.post_json("gone", json!({})).await;
        app.http
            .delete(app.sink.callback_url("gone"))
            .send()
            .await
            .unwrap();
        app.sink.stop().await;
    }
    let app = spawn_app_with(persistent(dir.path())).await;
    let all: Value = app.get("/callbacks/keep/all").await.json().await.unwrap();
    let ns: Vec<_> = all["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"]["n"].clone())
        .collect();
    assert_eq!(ns, vec![json!(1), json!(2), json!(3)]);
    assert_eq!(app.get("/callbacks/gone").await.status(), 404);
    let next: Value = app
        .post_json("keep", json!({"n": 4}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["seq"], 4, "seq goes on after a restart");
}

#[tokio::test]
async fn compaction_reclaims_the_space_of_deleted_callbacks() {
    if on_postgres() {
        eprintln!("SKIPPED compaction: the log is the embedded backend's; PostgreSQL has none");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("callbacks.log");
    let config = Config {
        compact_min_bytes: 64 * 1024,
        ..persistent(dir.path())
    };
    let app = spawn_app_with(config.clone()).await;
    let body = json!({"padding": "x".repeat(1000)});
    app.post_json("keep", json!({"kept": true})).await;
    for round in 0..3 {
        for i in 0..100 {
            app.post_json(&format!("tmp/{round}/{i}"), body.clone())
                .await;
        }
        app.http
            .delete(app.url("/callbacks?prefix=tmp%2F"))
            .send()
            .await
            .unwrap();
    }
    // A write once the garbage outweighs the live data starts a rewrite on a thread of its own;
    // callbacks keep arriving meanwhile and must all survive it.
    app.post_json("keep", json!({"kept": true})).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(5));
    let mut during = 0;
    loop {
        let size = std::fs::metadata(&log).unwrap().len();
        if size < 64 * 1024 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "log is still {size} bytes; expected compaction to shrink it"
        );
        app.post_json("during", json!({"n": during})).await;
        during += 1;
        tick.tick().await;
    }
    app.sink.stop().await;
    let app = spawn_app_with(config).await;
    let all: Value = app.get("/callbacks/keep/all").await.json().await.unwrap();
    assert_eq!(all["callbacks"].as_array().unwrap().len(), 2);
    let during_all: Value = app.get("/callbacks/during/all").await.json().await.unwrap();
    assert_eq!(
        during_all["callbacks"].as_array().unwrap().len(),
        during,
        "every callback posted while compacting survived"
    );
    let list: Value = app.get("/callbacks?prefix=tmp").await.json().await.unwrap();
    assert_eq!(list["keys"], json!([]));
}
