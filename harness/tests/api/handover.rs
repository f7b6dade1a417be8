//! The moment a run is over, its environment is already someone else's: a cancel's answer (or
//! a follower's end) never races the hand-over.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn when_cancel_answers_the_environment_is_already_handed_to_the_next_run() {
    let app = spawn_app(|_| {}).await;
    for _ in 0..20 {
        let holder = app.create_run("ann", 1, &["hang.sh"]).await;
        let next = app.create_run("bob", 1, &["pass.sh"]).await;
        let (h, n) = (
            holder["id"].as_i64().expect("id"),
            next["id"].as_i64().expect("id"),
        );
        app.wait_for_log_line(h, " out ready").await;
        let cancelled: Value = app
            .post(&format!("/api/runs/{h}/cancel"))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(cancelled["status"], "cancelled");
        let envs = app.get_json("/api/envs").await;
        assert_ne!(
            envs[0]["run_id"], h,
            "env 1 still held by the cancelled run: {envs}"
        );
        app.wait_finished(n).await;
    }
}
