//! systemd integration: `READY=1`, `STATUS=`, `STOPPING=1` and the watchdog, over the
//! `$NOTIFY_SOCKET` datagram socket (sd-notify). Outside systemd every call is a no-op.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends notifications to the service manager, remembering the last status line so an unchanged
/// one is not resent.
#[derive(Debug, Default)]
pub struct Notifier {
    last_status: String,
    ready: bool,
}

impl Notifier {
    /// A notifier for this process.
    pub fn new() -> Self {
        Self::default()
    }

    /// The interval at which to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when the watchdog is
    /// enabled for this process.
    pub fn watchdog_interval() -> Option<Duration> {
        sd_notify::watchdog_enabled().map(|d| d / 2)
    }

    /// `READY=1`, once.
    pub fn ready(&mut self) {
        if !self.ready {
            self.ready = true;
            send(&[NotifyState::Ready]);
        }
    }

    /// Whether `READY=1` was sent.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// `STATUS=<line>` when it changed.
    pub fn status(&mut self, line: &str) {
        if self.last_status != line {
            self.last_status = line.to_string();
            send(&[NotifyState::Status(line)]);
        }
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        send(&[NotifyState::Stopping]);
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
