#![allow(clippy::unwrap_used)]

use super::*;
use crate::messages::samples::{self, scheduler, worker};
use crate::messages::{Contribution, Evidence, EvidenceKind, Heartbeat};
use crate::topics::TopicPrefix;

const NOW: u64 = 1_700_000_000_123;

fn prefix() -> TopicPrefix {
    TopicPrefix::with_default_base(Address([0x90; 20]))
}

/// The topic a sample message travels on.
fn topic_for(message: &Message) -> String {
    let prefix = prefix();
    let me = worker().address();
    let channel = Channel::ALL
        .into_iter()
        .find(|c| c.carries(message.kind()))
        .unwrap();
    prefix.topic(me, channel)
}

fn signer_for(message: &Message) -> Signer {
    let channel = Topic::parse(&prefix(), &topic_for(message))
        .unwrap()
        .channel;
    if channel == Channel::Inbox {
        scheduler()
    } else {
        worker()
    }
}

fn heartbeat() -> Message {
    Message::Heartbeat(Heartbeat {
        running_tasks: 2,
        free_slots: 2,
        free_memory_bytes: 1 << 30,
        free_disk_bytes: 1 << 34,
        accepting: true,
    })
}

/// Signs an envelope built by hand (to make ones `seal` refuses to make).
fn sign_raw(signer: &Signer, topic: &str, mut envelope: Envelope) -> Vec<u8> {
    envelope.signature = signer.sign_personal(envelope.signing_hash(topic).as_bytes());
    postcard::to_allocvec(&envelope).unwrap()
}

fn raw(kind: MessageKind, sender: Address, body: Vec<u8>) -> Envelope {
    Envelope {
        version: PROTOCOL_VERSION,
        kind,
        sender,
        seq: 1,
        sent_at_ms: NOW,
        body,
        signature: Signature::ZERO,
    }
}

#[test]
fn every_message_kind_round_trips_through_seal_and_open() {
    for (seq, message) in samples::all().into_iter().enumerate() {
        let signer = signer_for(&message);
        let topic = topic_for(&message);
        let seq = seq as u64 + 1;
        let wire = Envelope::seal(&signer, &topic, seq, NOW, &message).unwrap();
        let opened = Envelope::open(&wire, &topic).unwrap();
        assert_eq!(
            opened,
            Opened {
                sender: signer.address(),
                seq,
                sent_at_ms: NOW,
                message: message.clone(),
            },
            "{}",
            message.kind()
        );
        let parsed = Topic::parse(&prefix(), &topic).unwrap();
        check_sender_for_topic(&opened, &parsed, scheduler().address()).unwrap();
    }
}

#[test]
fn the_wire_form_is_the_documented_layout() {
    let signer = worker();
    let topic = prefix().outbox(signer.address());
    let message = heartbeat();
    let wire = Envelope::seal(&signer, &topic, 300, NOW, &message).unwrap();
    let body = postcard::to_allocvec(&message).unwrap();
    let mut expected = vec![PROTOCOL_VERSION, MessageKind::Heartbeat as u8];
    expected.extend_from_slice(signer.address().as_bytes());
    expected.extend_from_slice(&[0xac, 0x02]); // varint(300)
    expected.extend_from_slice(&postcard::to_allocvec(&NOW).unwrap());
    expected.push(u8::try_from(body.len()).unwrap());
    expected.extend_from_slice(&body);
    assert_eq!(&wire[..expected.len()], &expected[..]);
    assert_eq!(wire.len(), expected.len() + 65);
    let envelope = Envelope::decode(&wire).unwrap();
    assert_eq!(&wire[expected.len()..], envelope.signature.as_bytes());
}

#[test]
fn the_signing_hash_is_the_documented_concatenation() {
    let envelope = Envelope {
        version: 1,
        kind: MessageKind::Reveal,
        sender: Address([0x22; 20]),
        seq: 0x0102_0304_0506_0708,
        sent_at_ms: 0x1112_1314_1516_1718,
        body: vec![1, 2, 3],
        signature: Signature::ZERO,
    };
    let topic = "edgepool/v1/x/workers/y/outbox";
    let mut preimage = b"edgepool/v1/envelope".to_vec();
    preimage.extend_from_slice(keccak256(topic.as_bytes()).as_bytes());
    preimage.extend_from_slice(&[1, 8]);
    preimage.extend_from_slice(&[0x22; 20]);
    preimage.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    preimage.extend_from_slice(&[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
    preimage.extend_from_slice(keccak256(&[1, 2, 3]).as_bytes());
    assert_eq!(envelope.signing_hash(topic), keccak256(&preimage));
}

#[test]
fn flipping_any_byte_of_the_wire_form_is_refused() {
    let message = Message::Contribution(Contribution::standard(
        worker().address(),
        samples::task_id(),
        crate::Digest::from([0xdd; 32]),
        987_654_321,
    ));
    let topic = topic_for(&message);
    let wire = Envelope::seal(&worker(), &topic, 42, NOW, &message).unwrap();
    for position in 0..wire.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut tampered = wire.clone();
            tampered[position] ^= mask;
            let result = Envelope::open(&tampered, &topic);
            assert!(
                result.is_err(),
                "byte {position} ^ {mask:#04x} was accepted: {result:?}"
            );
        }
    }
}

#[test]
fn truncated_or_extended_wire_forms_are_refused() {
    let message = heartbeat();
    let topic = topic_for(&message);
    let wire = Envelope::seal(&worker(), &topic, 1, NOW, &message).unwrap();
    for len in 0..wire.len() {
        assert!(
            Envelope::open(&wire[..len], &topic).is_err(),
            "length {len}"
        );
    }
    let mut extended = wire.clone();
    extended.push(0);
    assert_eq!(
        Envelope::open(&extended, &topic),
        Err(EnvelopeError::TrailingBytes)
    );
}

#[test]
fn a_message_opened_on_another_topic_has_a_bad_signature() {
    let message = heartbeat();
    let me = worker().address();
    let wire = Envelope::seal(&worker(), &prefix().outbox(me), 1, NOW, &message).unwrap();
    let other_worker = prefix().outbox(Address([0x33; 20]));
    for topic in [prefix().inbox(me), other_worker] {
        let err = Envelope::open(&wire, &topic).unwrap_err();
        assert!(matches!(err, EnvelopeError::BadSignature(_)), "{err}");
        assert_eq!(err.reason(), "bad_signature");
    }
}

#[test]
fn a_message_signed_by_another_key_claiming_the_sender_is_refused() {
    let message = heartbeat();
    let topic = topic_for(&message);
    let impostor = Signer::from_bytes(&[5; 32]).unwrap();
    let envelope = raw(
        MessageKind::Heartbeat,
        worker().address(),
        postcard::to_allocvec(&message).unwrap(),
    );
    let wire = sign_raw(&impostor, &topic, envelope);
    assert_eq!(
        Envelope::open(&wire, &topic),
        Err(EnvelopeError::BadSignature(SignatureError::WrongSigner {
            expected: worker().address(),
            found: impostor.address()
        }))
    );
}

#[test]
fn an_oversized_payload_is_refused_before_decoding() {
    let wire = vec![PROTOCOL_VERSION; MAX_ENVELOPE_BYTES + 1];
    assert_eq!(
        Envelope::open(&wire, "t"),
        Err(EnvelopeError::TooLarge {
            len: MAX_ENVELOPE_BYTES + 1,
            max: MAX_ENVELOPE_BYTES
        })
    );
}

#[test]
fn sealing_a_message_over_the_size_limit_is_refused() {
    let mut request = samples::secret_request();
    request.evidence = Evidence {
        kind: EvidenceKind::Tdx,
        report: vec![1; MAX_ENVELOPE_BYTES],
        aux: Vec::new(),
    };
    let message = Message::SecretRequest(request);
    let err = Envelope::seal(&worker(), &topic_for(&message), 1, NOW, &message).unwrap_err();
    assert!(matches!(err, EnvelopeError::TooLarge { .. }), "{err}");
    assert_eq!(err.reason(), "too_large");
}

#[test]
fn a_body_of_another_kind_than_declared_is_refused() {
    let message = heartbeat();
    let topic = topic_for(&message);
    let envelope = raw(
        MessageKind::Accept,
        worker().address(),
        postcard::to_allocvec(&message).unwrap(),
    );
    assert_eq!(
        Envelope::open(&sign_raw(&worker(), &topic, envelope), &topic),
        Err(EnvelopeError::KindMismatch {
            declared: MessageKind::Accept,
            found: MessageKind::Heartbeat
        })
    );
}

#[test]
fn a_signed_body_with_trailing_bytes_or_garbage_is_refused() {
    let topic = topic_for(&heartbeat());
    let mut body = postcard::to_allocvec(&heartbeat()).unwrap();
    body.push(0);
    let envelope = raw(MessageKind::Heartbeat, worker().address(), body);
    assert_eq!(
        Envelope::open(&sign_raw(&worker(), &topic, envelope), &topic),
        Err(EnvelopeError::TrailingBytes)
    );
    let envelope = raw(MessageKind::Heartbeat, worker().address(), vec![200, 1, 2]);
    let err = Envelope::open(&sign_raw(&worker(), &topic, envelope), &topic).unwrap_err();
    assert!(matches!(err, EnvelopeError::Decode(_)), "{err}");
}

#[test]
fn an_invalid_message_is_refused_when_sealed_and_when_opened() {
    let mut contribution = Contribution::standard(
        worker().address(),
        samples::task_id(),
        crate::Digest::default(),
        1,
    );
    contribution.enclave_signature = vec![0; 10];
    let message = Message::Contribution(contribution);
    let topic = topic_for(&message);
    let expected = EnvelopeError::Invalid(ValidationError::EnclaveSignatureLength { found: 10 });
    assert_eq!(
        Envelope::seal(&worker(), &topic, 1, NOW, &message),
        Err(expected.clone())
    );
    let envelope = raw(
        MessageKind::Contribution,
        worker().address(),
        postcard::to_allocvec(&message).unwrap(),
    );
    assert_eq!(
        Envelope::open(&sign_raw(&worker(), &topic, envelope), &topic),
        Err(expected)
    );
}

#[test]
fn another_version_and_empty_payloads_are_refused() {
    let message = heartbeat();
    let topic = topic_for(&message);
    let mut envelope = raw(
        MessageKind::Heartbeat,
        worker().address(),
        postcard::to_allocvec(&message).unwrap(),
    );
    envelope.version = 2;
    assert_eq!(
        Envelope::open(&sign_raw(&worker(), &topic, envelope), &topic),
        Err(EnvelopeError::UnsupportedVersion { found: 2 })
    );
    assert!(matches!(
        Envelope::open(&[], &topic),
        Err(EnvelopeError::Decode(_))
    ));
}

#[test]
fn a_worker_may_publish_only_on_its_own_outbox_and_capacity() {
    let prefix = prefix();
    let me = worker();
    let other = Address([0x44; 20]);
    for (message, channel) in [
        (heartbeat(), Channel::Outbox),
        (Message::Capacity(samples::capacity()), Channel::Capacity),
    ] {
        let mine = Topic {
            worker: me.address(),
            channel,
        };
        let theirs = Topic {
            worker: other,
            channel,
        };
        let opened = Envelope::open(
            &Envelope::seal(&me, &theirs.render(&prefix), 1, NOW, &message).unwrap(),
            &theirs.render(&prefix),
        )
        .unwrap();
        assert_eq!(
            check_sender_for_topic(&opened, &theirs, scheduler().address()),
            Err(EnvelopeError::WrongSender {
                expected: other,
                found: me.address()
            })
        );
        check_sender_for_topic(&opened, &mine, scheduler().address()).unwrap();
    }
}

#[test]
fn only_the_scheduler_may_publish_on_an_inbox() {
    let prefix = prefix();
    let inbox = Topic {
        worker: worker().address(),
        channel: Channel::Inbox,
    };
    let message = Message::Assignment(samples::assignment());
    let forger = Signer::from_bytes(&[6; 32]).unwrap();
    let wire = Envelope::seal(&forger, &inbox.render(&prefix), 1, NOW, &message).unwrap();
    let opened = Envelope::open(&wire, &inbox.render(&prefix)).unwrap();
    let err = check_sender_for_topic(&opened, &inbox, scheduler().address()).unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::SenderNotAllowed {
            sender: forger.address(),
            channel: Channel::Inbox
        }
    );
    assert_eq!(err.reason(), "sender_not_allowed");
}

#[test]
fn a_message_on_a_channel_that_does_not_carry_its_kind_is_refused() {
    let prefix = prefix();
    let me = worker();
    // A worker "assigning" itself a task on its own outbox.
    let outbox = Topic {
        worker: me.address(),
        channel: Channel::Outbox,
    };
    let message = Message::Assignment(samples::assignment());
    let wire = Envelope::seal(&me, &outbox.render(&prefix), 1, NOW, &message).unwrap();
    let opened = Envelope::open(&wire, &outbox.render(&prefix)).unwrap();
    assert_eq!(
        check_sender_for_topic(&opened, &outbox, scheduler().address()),
        Err(EnvelopeError::KindNotAllowed {
            kind: MessageKind::Assignment,
            channel: Channel::Outbox
        })
    );
    let presence = Topic {
        channel: Channel::Presence,
        ..outbox
    };
    assert!(check_sender_for_topic(&opened, &presence, scheduler().address()).is_err());
}

#[test]
fn opened_envelopes_feed_the_sequence_tracker_and_replays_are_refused() {
    let message = heartbeat();
    let topic = topic_for(&message);
    let first = Envelope::seal(&worker(), &topic, 1, NOW, &message).unwrap();
    let second = Envelope::seal(&worker(), &topic, 2, NOW + 1, &message).unwrap();
    let mut tracker = SequenceTracker::new();
    for wire in [&first, &second] {
        let opened = Envelope::open(wire, &topic).unwrap();
        tracker.check_and_accept(opened.sender, opened.seq).unwrap();
    }
    for wire in [&first, &second] {
        let opened = Envelope::open(wire, &topic).unwrap();
        let err = tracker.check(opened.sender, opened.seq).unwrap_err();
        assert!(matches!(err, EnvelopeError::Replay { .. }), "{err}");
    }
}

#[test]
fn error_reasons_are_distinct_labels() {
    let errors = [
        EnvelopeError::TooLarge { len: 0, max: 0 },
        EnvelopeError::Decode(String::new()),
        EnvelopeError::TrailingBytes,
        EnvelopeError::UnsupportedVersion { found: 0 },
        EnvelopeError::KindMismatch {
            declared: MessageKind::Accept,
            found: MessageKind::Reveal,
        },
        EnvelopeError::BadSignature(SignatureError::HighS),
        EnvelopeError::WrongSender {
            expected: Address::ZERO,
            found: Address::ZERO,
        },
        EnvelopeError::SenderNotAllowed {
            sender: Address::ZERO,
            channel: Channel::Inbox,
        },
        EnvelopeError::KindNotAllowed {
            kind: MessageKind::Accept,
            channel: Channel::Inbox,
        },
        EnvelopeError::Replay {
            sender: Address::ZERO,
            seq: 0,
            last: 0,
        },
        EnvelopeError::Invalid(ValidationError::EnclaveSignatureLength { found: 0 }),
    ];
    let mut reasons: Vec<&str> = errors.iter().map(EnvelopeError::reason).collect();
    assert!(reasons
        .iter()
        .all(|r| r.bytes().all(|c| c.is_ascii_lowercase() || c == b'_')));
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), errors.len());
}

#[test]
fn decode_trusted_gives_the_sealed_message_and_refuses_garbage() {
    for message in samples::all() {
        let wire = Envelope::seal(
            &signer_for(&message),
            &topic_for(&message),
            1,
            NOW,
            &message,
        )
        .unwrap();
        assert_eq!(Envelope::decode_trusted(&wire).unwrap(), message);
    }
    assert!(Envelope::decode_trusted(&[]).is_err());
    let mut wire =
        Envelope::seal(&worker(), &topic_for(&heartbeat()), 1, NOW, &heartbeat()).unwrap();
    wire.push(0);
    assert!(matches!(
        Envelope::decode_trusted(&wire),
        Err(EnvelopeError::TrailingBytes)
    ));
}
