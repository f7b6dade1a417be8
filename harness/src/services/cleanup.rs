//! After a crash: the cleanup (`ignore_abort`) scripts of a run the dead server left running.

use std::{collections::HashMap, sync::Arc};

use tokio_util::sync::CancellationToken;

use crate::{
    exec::{self, Spec},
    logs::{RunLog, Tag},
    model::ScriptState,
    scripts::{RunConfig, TESTS},
};

use super::{
    RunHost,
    board::{Gate, gate},
};

/// After a crash: the `ignore_abort` scripts of an interrupted run whose `after` can be met when
/// the tests count as `cancelled` and every other script as `cancelled` too.
pub(crate) async fn cleanup_after_crash(
    host: &impl RunHost,
    config: &RunConfig,
    log: &Arc<RunLog>,
    work: &std::path::Path,
) {
    let states: HashMap<String, ScriptState> = config
        .scripts
        .keys()
        .map(|n| (n.clone(), ScriptState::Cancelled))
        .chain(std::iter::once((TESTS.to_owned(), ScriptState::Cancelled)))
        .collect();
    let mut env = host.base_env();
    for name in &config.ports {
        if let Ok(port) = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
        {
            env.push((name.clone(), port.to_string()));
        }
    }
    let _ = std::fs::create_dir_all(work);
    for script in config.scripts.values().filter(|s| s.ignore_abort) {
        if !matches!(gate(&script.after, &states), Gate::Met) {
            continue;
        }
        log.line(
            Tag::Harness,
            &format!(
                "after the restart: running ignore_abort script {}",
                script.name
            ),
        );
        let spec = Spec {
            argv: vec!["bash".into(), "-c".into(), script.run.clone().into()],
            cwd: work.to_owned(),
            env: env.clone(),
            timeout: script.timeout,
            kill_grace: host.kill_grace(),
            tags: Some((
                format!("{}/out", script.name),
                format!("{}/err", script.name),
            )),
        };
        // The same start and end lines as a script run by the run itself: the log viewer makes
        // a section of them.
        log.line(
            Tag::Harness,
            &format!("script {} starts: {}", script.name, script.run),
        );
        let started = std::time::Instant::now();
        let outcome = exec::run(&spec, log, &CancellationToken::new(), |_| {}, &|_| {}).await;
        log.line(
            Tag::Harness,
            &format!(
                "script {} {} exit={} in {:.3}s",
                script.name,
                outcome.status.as_str(),
                outcome.exit_code.map_or("-".into(), |c| c.to_string()),
                started.elapsed().as_secs_f64()
            ),
        );
    }
}
