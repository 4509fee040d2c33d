//! Crash points for fault-injection tests: the agent's equivalent of `kill -9` at a named place.
//!
//! Built only with the cargo feature `failpoints` (the `fail` crate); without it every call here
//! is an empty inline function. With it, `edgepool-agent run` reads the `FAILPOINTS` environment
//! variable at start (`fail::FailScenario::setup`), e.g.
//! `FAILPOINTS='contribution.after_commit=return'`, and a point whose action fires **aborts the
//! process** (`std::process::abort`, SIGABRT): no destructor runs, no buffer is flushed, no
//! drain, no last PUBACK; the kernel closes the sockets and what SQLite committed is on disk. That
//! is what `kill -9` leaves behind, at an exact place instead of a random one. (`panic` is not
//! used: it unwinds, runs destructors and on a tokio worker only ends one task.) The `fail`
//! syntax applies: `2*off->return` crashes at the third pass, `sleep(100)` or `pause` also work.
//!
//! Points, in pipeline order (see RELIABILITY.md, "Fault injection"):
//! `accept.after_commit`, `status.after_commit.<STATUS>` (each transition a job reports),
//! `job.after_fetch`, `sandbox.between_slices` (mid-compute), `job.after_compute`,
//! `contribution.after_commit`, `outbox.after_publish` (handed to the MQTT client, maybe not yet
//! on the wire), `outbox.acked.<kind>` (PUBACK received, row not yet deleted), `reveal.after_commit`,
//! `upload.after_put`, `uploaded.after_commit`, `complete.after_commit`.

/// Crashes here if the point `name` is armed.
#[inline]
pub fn crash_point(name: &str) {
    #[cfg(feature = "failpoints")]
    armed::check(name);
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Crashes here if the point `<prefix>.<detail>` is armed (the name is only built with the
/// feature).
#[inline]
pub fn crash_point_at(prefix: &str, detail: impl std::fmt::Display) {
    #[cfg(feature = "failpoints")]
    armed::check(&format!("{prefix}.{detail}"));
    #[cfg(not(feature = "failpoints"))]
    let _ = (prefix, &detail);
}

/// Arms the points named in `FAILPOINTS`; the returned guard must live as long as the process.
#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}

#[cfg(feature = "failpoints")]
mod armed {
    use std::io::Write as _;

    /// `Some(())` when the point's action is `return`.
    fn fires(name: &str) -> Option<()> {
        fail::fail_point!(name, |_| Some(()));
        None
    }

    pub(super) fn check(name: &str) {
        if fires(name).is_some() {
            // One unbuffered line so the test can tell this crash from any other, then abort.
            let _ = writeln!(
                std::io::stderr(),
                "edgepool-agent: failpoint {name}: aborting"
            );
            std::process::abort();
        }
    }
}
