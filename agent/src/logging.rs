//! Log setup: tracing, one line per event with structured fields, on stderr (journald adds the
//! timestamp under systemd), as text or as JSON (`log.format`). The level comes from
//! `EDGEPOOL_LOG`, else `log.level`.

use tracing_subscriber::EnvFilter;

use crate::config::LogSection;

/// Installs the global subscriber. Calling it twice keeps the first one.
pub fn init(log: &LogSection, env_level: Option<&str>) {
    let level = env_level.unwrap_or(&log.level);
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let _ = match (log.format.as_str(), under_journald) {
        ("json", _) => builder.json().flatten_event(true).try_init(),
        (_, true) => builder.without_time().try_init(),
        (_, false) => builder.try_init(),
    };
}
