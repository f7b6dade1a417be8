//! Listening on a notification channel with one connection of its own (outside any pool),
//! reconnecting whenever it is lost: used by the callback store (`wakeups.rs`) and by the
//! harness (its hints), each on its own channel.

use std::time::Duration;

use futures_util::StreamExt as _;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

/// How long the listener waits before connecting again after losing its connection (nothing
/// signals that the database is back: it is tried again).
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Listens on `channel` until `shutdown`: `on_payload` gets every notification's payload,
/// `on_connected` runs each time `LISTEN` has taken effect — the first time and after every
/// reconnection, when notifications sent meanwhile may have been lost. Neither may block.
pub async fn listen(
    config: tokio_postgres::Config,
    channel: &'static str,
    on_payload: impl Fn(&str),
    on_connected: impl Fn(),
    shutdown: CancellationToken,
) {
    let mut connected_before = false;
    loop {
        let ended = tokio::select! {
            ended = listen_once(&config, channel, &on_payload, &on_connected, &mut connected_before) => ended,
            () = shutdown.cancelled() => return,
        };
        match ended {
            Ok(()) => tracing::warn!(
                channel,
                "the database closed the listening connection; reconnecting"
            ),
            Err(e) => {
                tracing::warn!(error = %e, channel, "the listening connection to the database failed; reconnecting")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// One connection's life: `LISTEN`, then every notification until it ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    channel: &str,
    on_payload: &impl Fn(&str),
    on_connected: &impl Fn(),
    connected_before: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    // The connection is driven by polling its messages; LISTEN runs meanwhile.
    let statement = format!("LISTEN {channel}");
    let listening = client.batch_execute(&statement);
    tokio::pin!(listening);
    loop {
        tokio::select! {
            done = &mut listening => {
                done?;
                break;
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(n))) => on_payload(n.payload()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    }
    if *connected_before {
        tracing::info!(channel, "listening to the database again; catching up");
    }
    *connected_before = true;
    on_connected();
    while let Some(message) = messages.next().await {
        if let AsyncMessage::Notification(n) = message? {
            on_payload(n.payload());
        }
    }
    Ok(())
}
