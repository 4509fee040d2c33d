//! Log setup: tracing, one line per event with structured fields, on stderr (journald adds the
//! timestamp under systemd), as text or as JSON (`log.format`). The level comes from
//! `EDGEPOOL_LOG`, else `log.level`.
//!
//! The filter is a list of `target=level` directives and an optional default level
//! (`edgepool_agent=debug,info`), parsed by tracing-subscriber's [`Targets`]. Its `EnvFilter`
//! also takes span and field directives, but those need the regex engine, which was about
//! 0.4 MiB of the binary; the agent's operators need targets and levels only.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogSection;

/// Parses a log filter: comma-separated `target=level` directives and an optional bare default
/// level, e.g. `info` or `edgepool_agent=debug,warn`.
///
/// # Errors
/// The parser's message when a directive is not `target=level` or `level`, or a level is not one
/// of `off`, `error`, `warn`, `info`, `debug`, `trace`.
pub fn parse_filter(level: &str) -> Result<Targets, tracing_subscriber::filter::ParseError> {
    level.parse()
}

/// Installs the global subscriber. Calling it twice keeps the first one.
pub fn init(log: &LogSection, env_level: Option<&str>) {
    let level = env_level.unwrap_or(&log.level);
    let filter =
        parse_filter(level).unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    let _ = match (log.format.as_str(), under_journald) {
        ("json", _) => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .try_init(),
        (_, true) => builder.without_time().finish().with(filter).try_init(),
        (_, false) => builder.finish().with(filter).try_init(),
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn a_filter_with_targets_and_a_default_level_is_parsed_as_the_env_filter_syntax() {
        let filter = parse_filter("edgepool_agent=debug,warn").unwrap();
        assert!(filter.would_enable("edgepool_agent::daemon", &Level::DEBUG));
        assert!(!filter.would_enable("edgepool_agent::daemon", &Level::TRACE));
        assert!(filter.would_enable("rumqttc", &Level::WARN));
        assert!(!filter.would_enable("rumqttc", &Level::INFO));
        let plain = parse_filter("info").unwrap();
        assert!(plain.would_enable("anything", &Level::INFO));
        assert!(!plain.would_enable("anything", &Level::DEBUG));
    }

    #[test]
    fn unknown_levels_and_span_directives_are_refused() {
        assert!(parse_filter("edgepool=loud").is_err());
        assert!(parse_filter("[task{id=1}]=debug").is_err());
    }
}
