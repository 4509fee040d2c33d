//! MQTT topics of protocol v1: builders, the scheduler's wildcard subscriptions, a strict parser,
//! and the plain-text presence payload.
//!
//! ```text
//! {base}/{pool}/workers/{worker}/presence   retained "online" / "offline" (the last will)
//! {base}/{pool}/workers/{worker}/capacity   retained signed capacity advertisement
//! {base}/{pool}/workers/{worker}/inbox      scheduler → worker
//! {base}/{pool}/workers/{worker}/outbox     worker → scheduler
//! ```
//!
//! `base` defaults to [`DEFAULT_BASE`]; `pool` and `worker` are lower-case `0x` hex addresses, so
//! one worker has exactly one spelling of each topic (which broker ACLs can rely on).

use std::fmt;
use std::str::FromStr;

use crate::messages::MessageKind;
use crate::primitives::Address;

mod presence;

pub use presence::{Presence, UnknownPresence};

/// The default base of the topic prefix.
pub const DEFAULT_BASE: &str = "edgepool/v1";

/// Why a topic or a topic base is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// A base that is empty, has empty levels, wildcards, NUL or a leading `$`.
    #[error("topic base must be non-empty levels without '+', '#', NUL or a leading '$', found {found:?}")]
    InvalidBase {
        /// The base given.
        found: String,
    },
    /// A topic containing an MQTT wildcard.
    #[error("expected a topic name without wildcards, found {found:?}")]
    Wildcard {
        /// The topic, shortened.
        found: String,
    },
    /// A topic outside this pool's prefix.
    #[error("expected a topic under {expected}/, found {found:?}")]
    OtherPrefix {
        /// The prefix.
        expected: String,
        /// The topic, shortened.
        found: String,
    },
    /// A topic under the prefix but not of the form `workers/{worker}/{channel}`.
    #[error("expected {{prefix}}/workers/{{worker}}/{{channel}}, found {found:?}")]
    Shape {
        /// The topic, shortened.
        found: String,
    },
    /// A worker level that is not `0x` + 40 lower-case hex digits.
    #[error("expected a worker as 0x + 40 lower-case hex digits, found {found:?}")]
    Worker {
        /// The level, shortened.
        found: String,
    },
    /// A last level that is not a channel.
    #[error("expected a channel (presence, capacity, inbox, outbox), found {found:?}")]
    Channel {
        /// The level, shortened.
        found: String,
    },
}

pub(crate) fn shorten(s: &str) -> String {
    s.chars().take(120).collect()
}

/// The per-worker channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// Retained `online`/`offline`, plain text (no envelope).
    Presence,
    /// Retained signed capacity advertisement.
    Capacity,
    /// Scheduler → worker.
    Inbox,
    /// Worker → scheduler.
    Outbox,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 4] = [
        Channel::Presence,
        Channel::Capacity,
        Channel::Inbox,
        Channel::Outbox,
    ];

    /// The topic level.
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Presence => "presence",
            Channel::Capacity => "capacity",
            Channel::Inbox => "inbox",
            Channel::Outbox => "outbox",
        }
    }

    /// Whether messages on this channel are published retained.
    pub fn is_retained(&self) -> bool {
        matches!(self, Channel::Presence | Channel::Capacity)
    }

    /// Whether an envelope of `kind` may travel on this channel (presence carries none).
    pub fn carries(&self, kind: MessageKind) -> bool {
        match self {
            Channel::Presence => false,
            Channel::Capacity => kind == MessageKind::Capacity,
            Channel::Inbox => matches!(
                kind,
                MessageKind::Assignment | MessageKind::Notification | MessageKind::SecretResponse
            ),
            Channel::Outbox => matches!(
                kind,
                MessageKind::Heartbeat
                    | MessageKind::Accept
                    | MessageKind::Decline
                    | MessageKind::StatusUpdate
                    | MessageKind::Contribution
                    | MessageKind::Reveal
                    | MessageKind::ResultUploaded
                    | MessageKind::SecretRequest
            ),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, TopicError> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| TopicError::Channel { found: shorten(s) })
    }
}

/// The topic prefix of one workerpool: `{base}/{pool}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPrefix {
    prefix: String,
    pool: Address,
}

impl TopicPrefix {
    /// The prefix `{base}/{pool}` with `pool` in lower-case hex.
    ///
    /// # Errors
    /// [`TopicError::InvalidBase`] when `base` is empty, has an empty level (leading, trailing or
    /// double `/`), a wildcard, NUL, or starts with `$` (reserved by brokers).
    pub fn new(base: &str, pool: Address) -> Result<Self, TopicError> {
        let valid = !base.is_empty()
            && !base.starts_with('$')
            && !base.contains(['+', '#', '\0'])
            && base.split('/').all(|level| !level.is_empty());
        if !valid {
            return Err(TopicError::InvalidBase {
                found: shorten(base),
            });
        }
        Ok(Self {
            prefix: format!("{base}/{}", pool.to_lower_hex()),
            pool,
        })
    }

    /// The prefix with the [`DEFAULT_BASE`]: `edgepool/v1/{pool}`.
    pub fn with_default_base(pool: Address) -> Self {
        Self {
            prefix: format!("{DEFAULT_BASE}/{}", pool.to_lower_hex()),
            pool,
        }
    }

    /// The prefix, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// The workerpool.
    pub fn pool(&self) -> Address {
        self.pool
    }

    /// `{prefix}/workers/{worker}/{channel}`.
    pub fn topic(&self, worker: Address, channel: Channel) -> String {
        format!(
            "{}/workers/{}/{}",
            self.prefix,
            worker.to_lower_hex(),
            channel
        )
    }

    /// The worker's presence topic.
    pub fn presence(&self, worker: Address) -> String {
        self.topic(worker, Channel::Presence)
    }

    /// The worker's capacity topic.
    pub fn capacity(&self, worker: Address) -> String {
        self.topic(worker, Channel::Capacity)
    }

    /// The worker's inbox (scheduler → worker).
    pub fn inbox(&self, worker: Address) -> String {
        self.topic(worker, Channel::Inbox)
    }

    /// The worker's outbox (worker → scheduler).
    pub fn outbox(&self, worker: Address) -> String {
        self.topic(worker, Channel::Outbox)
    }

    /// The subscription to `channel` of every worker: `{prefix}/workers/+/{channel}`.
    pub fn all(&self, channel: Channel) -> String {
        format!("{}/workers/+/{}", self.prefix, channel)
    }

    /// `{prefix}/workers/+/presence` (the scheduler subscribes).
    pub fn all_presence(&self) -> String {
        self.all(Channel::Presence)
    }

    /// `{prefix}/workers/+/capacity` (the scheduler subscribes).
    pub fn all_capacity(&self) -> String {
        self.all(Channel::Capacity)
    }

    /// `{prefix}/workers/+/outbox` (the scheduler subscribes).
    pub fn all_outbox(&self) -> String {
        self.all(Channel::Outbox)
    }

    /// `{prefix}/workers/+/inbox` (for monitoring tools).
    pub fn all_inbox(&self) -> String {
        self.all(Channel::Inbox)
    }
}

/// A parsed per-worker topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Topic {
    /// The worker the topic belongs to.
    pub worker: Address,
    /// Which of its channels.
    pub channel: Channel,
}

impl Topic {
    /// Parses `{prefix}/workers/{worker}/{channel}` exactly.
    ///
    /// # Errors
    /// [`TopicError::Wildcard`], [`TopicError::OtherPrefix`], [`TopicError::Shape`] (missing or
    /// extra levels), [`TopicError::Worker`] (not a lower-case hex address) or
    /// [`TopicError::Channel`].
    pub fn parse(prefix: &TopicPrefix, topic: &str) -> Result<Topic, TopicError> {
        if topic.contains(['+', '#']) {
            return Err(TopicError::Wildcard {
                found: shorten(topic),
            });
        }
        let rest = topic
            .strip_prefix(prefix.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| TopicError::OtherPrefix {
                expected: prefix.as_str().to_string(),
                found: shorten(topic),
            })?;
        let levels: Vec<&str> = rest.split('/').collect();
        let [workers, worker, channel] = levels.as_slice() else {
            return Err(TopicError::Shape {
                found: shorten(topic),
            });
        };
        if *workers != "workers" {
            return Err(TopicError::Shape {
                found: shorten(topic),
            });
        }
        Ok(Topic {
            worker: parse_lower_hex_address(worker)?,
            channel: channel.parse()?,
        })
    }

    /// The topic string under `prefix`.
    pub fn render(&self, prefix: &TopicPrefix) -> String {
        prefix.topic(self.worker, self.channel)
    }
}

fn parse_lower_hex_address(level: &str) -> Result<Address, TopicError> {
    let error = || TopicError::Worker {
        found: shorten(level),
    };
    let digits = level.strip_prefix("0x").ok_or_else(error)?;
    if digits.len() != 40
        || !digits
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(error());
    }
    level.parse().map_err(|_| error())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pool() -> Address {
        "0x61900627251D586FEBDb43393eB9F1e18CFAaF11"
            .parse()
            .unwrap()
    }

    fn worker() -> Address {
        "0x9d21148faceaA84a6417252A0025eFFFaF554DF6"
            .parse()
            .unwrap()
    }

    const PREFIX: &str = "edgepool/v1/0x61900627251d586febdb43393eb9f1e18cfaaf11";
    const WORKER: &str = "0x9d21148faceaa84a6417252a0025efffaf554df6";

    #[test]
    fn default_prefix_uses_lower_case_pool() {
        let prefix = TopicPrefix::with_default_base(pool());
        assert_eq!(prefix.as_str(), PREFIX);
        assert_eq!(TopicPrefix::new("edgepool/v1", pool()).unwrap(), prefix);
        assert_eq!(prefix.pool(), pool());
    }

    #[test]
    fn builders_produce_the_documented_topics() {
        let prefix = TopicPrefix::with_default_base(pool());
        let w = worker();
        assert_eq!(
            prefix.presence(w),
            format!("{PREFIX}/workers/{WORKER}/presence")
        );
        assert_eq!(
            prefix.capacity(w),
            format!("{PREFIX}/workers/{WORKER}/capacity")
        );
        assert_eq!(prefix.inbox(w), format!("{PREFIX}/workers/{WORKER}/inbox"));
        assert_eq!(
            prefix.outbox(w),
            format!("{PREFIX}/workers/{WORKER}/outbox")
        );
        assert_eq!(
            prefix.all_presence(),
            format!("{PREFIX}/workers/+/presence")
        );
        assert_eq!(
            prefix.all_capacity(),
            format!("{PREFIX}/workers/+/capacity")
        );
        assert_eq!(prefix.all_outbox(), format!("{PREFIX}/workers/+/outbox"));
        assert_eq!(prefix.all_inbox(), format!("{PREFIX}/workers/+/inbox"));
    }

    #[test]
    fn every_built_topic_parses_back() {
        let prefix = TopicPrefix::new("acme/edge", pool()).unwrap();
        for channel in Channel::ALL {
            let topic = Topic {
                worker: worker(),
                channel,
            };
            assert_eq!(
                Topic::parse(&prefix, &topic.render(&prefix)).unwrap(),
                topic
            );
        }
    }

    #[test]
    fn bad_bases_are_refused() {
        for base in [
            "",
            "/edgepool",
            "edgepool/",
            "a//b",
            "a/+/b",
            "a/#",
            "$SYS/x",
            "a\0b",
        ] {
            assert!(
                matches!(
                    TopicPrefix::new(base, pool()),
                    Err(TopicError::InvalidBase { .. })
                ),
                "{base:?}"
            );
        }
    }

    #[test]
    fn topics_that_are_not_exactly_ours_are_refused() {
        let prefix = TopicPrefix::with_default_base(pool());
        let other_pool = TopicPrefix::with_default_base(worker());
        type IsExpected = fn(&TopicError) -> bool;
        let cases: Vec<(String, IsExpected)> = vec![
            (other_pool.inbox(worker()), |e| {
                matches!(e, TopicError::OtherPrefix { .. })
            }),
            (format!("{PREFIX}x/workers/{WORKER}/inbox"), |e| {
                matches!(e, TopicError::OtherPrefix { .. })
            }),
            (prefix.all_outbox(), |e| {
                matches!(e, TopicError::Wildcard { .. })
            }),
            (format!("{PREFIX}/workers/#"), |e| {
                matches!(e, TopicError::Wildcard { .. })
            }),
            (format!("{PREFIX}/workers/{WORKER}/inbox/extra"), |e| {
                matches!(e, TopicError::Shape { .. })
            }),
            (format!("{PREFIX}/workers/{WORKER}"), |e| {
                matches!(e, TopicError::Shape { .. })
            }),
            (format!("{PREFIX}/nodes/{WORKER}/inbox"), |e| {
                matches!(e, TopicError::Shape { .. })
            }),
            (format!("{PREFIX}/workers/{}/inbox", worker()), |e| {
                matches!(e, TopicError::Worker { .. })
            }),
            (format!("{PREFIX}/workers/0x1234/inbox"), |e| {
                matches!(e, TopicError::Worker { .. })
            }),
            (format!("{PREFIX}/workers/{}/inbox", &WORKER[2..]), |e| {
                matches!(e, TopicError::Worker { .. })
            }),
            (format!("{PREFIX}/workers/{WORKER}/Inbox"), |e| {
                matches!(e, TopicError::Channel { .. })
            }),
            (format!("{PREFIX}/workers/{WORKER}/"), |e| {
                matches!(e, TopicError::Channel { .. })
            }),
            (PREFIX.to_string(), |e| {
                matches!(e, TopicError::OtherPrefix { .. })
            }),
        ];
        for (topic, expected) in cases {
            let err = Topic::parse(&prefix, &topic).unwrap_err();
            assert!(expected(&err), "{topic}: {err}");
        }
    }

    #[test]
    fn only_presence_and_capacity_are_retained() {
        let retained: Vec<Channel> = Channel::ALL
            .into_iter()
            .filter(Channel::is_retained)
            .collect();
        assert_eq!(retained, vec![Channel::Presence, Channel::Capacity]);
    }

    #[test]
    fn every_kind_travels_on_exactly_one_channel_and_presence_carries_none() {
        for kind in MessageKind::ALL {
            let channels = Channel::ALL.into_iter().filter(|c| c.carries(kind)).count();
            assert_eq!(channels, 1, "{kind}");
            assert!(!Channel::Presence.carries(kind));
        }
    }
}
