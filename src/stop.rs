//! The signals that stop a server (SIGINT, SIGTERM), installed before it announces its port.
//!
//! A handler installed lazily — on the first poll of the future that waits for it — leaves a
//! window after `listening on …` where the default action still applies: a supervisor or a
//! test that sends SIGTERM at once kills the process without the graceful stop (waiters
//! answered, log flushed). Installing both handlers first closes that window; a signal that
//! arrives before anyone waits is kept and ends the wait as soon as it starts.

use std::io;

#[cfg(unix)]
use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGINT and SIGTERM, caught from the moment this value exists.
pub(crate) struct StopSignals {
    #[cfg(unix)]
    interrupt: Signal,
    #[cfg(unix)]
    terminate: Signal,
}

impl StopSignals {
    /// Installs the handlers now, so neither signal can take the default action any more.
    pub(crate) fn install() -> io::Result<Self> {
        #[cfg(unix)]
        {
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the first SIGINT or SIGTERM, including one received before this was called.
    pub(crate) async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A signal sent after `install` and before anyone waits neither kills the process (this
    /// test would die with it) nor is lost: the later wait ends at once.
    #[tokio::test]
    async fn a_signal_before_the_wait_is_kept_and_ends_it() {
        let signals = StopSignals::install().expect("install the handlers");
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).expect("raise SIGTERM");
        tokio::time::timeout(std::time::Duration::from_secs(10), signals.recv())
            .await
            .expect("the earlier SIGTERM ends the wait");
    }
}
