//! Property tests of the protocol v1 codec: decoding untrusted bytes never panics, and every
//! message survives postcard and seal/open exactly.
#![allow(clippy::unwrap_used)]

use edgepool_protocol::envelope::{Envelope, MAX_ENVELOPE_BYTES, PROTOCOL_VERSION};
use edgepool_protocol::messages::{
    Accept, Contribution, Decline, Heartbeat, Message, Notification, Reveal, StatusUpdate,
};
use edgepool_protocol::status::{NotificationType, ReplicateStatus, ReplicateStatusCause};
use edgepool_protocol::{Address, Bytes32, Digest, Signer, TaskId};
use proptest::collection::vec;
use proptest::prelude::*;

const TOPIC: &str = "edgepool/v1/0x9090909090909090909090909090909090909090/workers/x/outbox";

fn signer() -> Signer {
    Signer::from_bytes(&[7; 32]).unwrap()
}

fn task_id() -> impl Strategy<Value = TaskId> {
    any::<[u8; 32]>().prop_map(TaskId::from)
}

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest::from)
}

fn bytes32() -> impl Strategy<Value = Bytes32> {
    any::<[u8; 32]>().prop_map(Bytes32::from)
}

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address::from)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,64}"
}

fn heartbeat() -> impl Strategy<Value = Message> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(
            |(running_tasks, free_slots, free_memory_bytes, free_disk_bytes, accepting)| {
                Message::Heartbeat(Heartbeat {
                    running_tasks,
                    free_slots,
                    free_memory_bytes,
                    free_disk_bytes,
                    accepting,
                })
            },
        )
}

fn status_update() -> impl Strategy<Value = Message> {
    (
        task_id(),
        proptest::sample::select(ReplicateStatus::ALL),
        proptest::option::of(proptest::sample::select(ReplicateStatusCause::ALL)),
        proptest::option::of(text()),
        any::<u64>(),
    )
        .prop_map(|(task_id, status, cause, detail, at_ms)| {
            Message::StatusUpdate(StatusUpdate {
                task_id,
                status,
                cause,
                detail,
                at_ms,
            })
        })
}

fn decline() -> impl Strategy<Value = Message> {
    (
        task_id(),
        proptest::sample::select(ReplicateStatusCause::ALL),
        text(),
    )
        .prop_map(|(task_id, cause, detail)| {
            Message::Decline(Decline {
                task_id,
                cause,
                detail,
            })
        })
}

fn contribution() -> impl Strategy<Value = Message> {
    (
        task_id(),
        digest(),
        bytes32(),
        bytes32(),
        address(),
        prop_oneof![Just(vec![0u8; 32]), vec(any::<u8>(), 65)],
        any::<u64>(),
    )
        .prop_map(
            |(task_id, result_digest, result_hash, result_seal, enclave_challenge, sig, fuel)| {
                Message::Contribution(Contribution {
                    task_id,
                    result_digest,
                    result_hash,
                    result_seal,
                    enclave_challenge,
                    enclave_signature: sig,
                    fuel_used: fuel,
                })
            },
        )
}

fn notification() -> impl Strategy<Value = Message> {
    (
        task_id(),
        proptest::sample::select(NotificationType::ALL),
        proptest::option::of(any::<u64>()),
        proptest::option::of(text()),
    )
        .prop_map(|(task_id, kind, deadline_ms, detail)| {
            Message::Notification(Notification {
                task_id,
                kind,
                deadline_ms,
                detail,
            })
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        heartbeat(),
        status_update(),
        decline(),
        contribution(),
        notification(),
        task_id().prop_map(|task_id| Message::Accept(Accept { task_id })),
        (task_id(), digest()).prop_map(|(task_id, result_digest)| Message::Reveal(Reveal {
            task_id,
            result_digest
        })),
    ]
}

proptest! {
    #[test]
    fn open_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..4096)) {
        let _ = Envelope::open(&bytes, TOPIC);
    }

    #[test]
    fn open_never_panics_on_arbitrary_bytes_after_a_valid_version(
        tail in vec(any::<u8>(), 0..4096)
    ) {
        let mut bytes = vec![PROTOCOL_VERSION];
        bytes.extend_from_slice(&tail);
        let _ = Envelope::open(&bytes, TOPIC);
    }

    #[test]
    fn message_decode_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..4096)) {
        let _ = postcard::from_bytes::<Message>(&bytes);
        let _ = postcard::take_from_bytes::<Message>(&bytes);
    }

    #[test]
    fn arbitrary_messages_round_trip_exactly_through_postcard(message in message()) {
        let bytes = postcard::to_allocvec(&message).unwrap();
        prop_assert_eq!(postcard::from_bytes::<Message>(&bytes).unwrap(), message);
    }

    #[test]
    fn arbitrary_messages_round_trip_exactly_through_seal_and_open(
        message in message(),
        seq in any::<u64>(),
        now_ms in any::<u64>(),
    ) {
        let signer = signer();
        let wire = Envelope::seal(&signer, TOPIC, seq, now_ms, &message).unwrap();
        let opened = Envelope::open(&wire, TOPIC).unwrap();
        prop_assert_eq!(opened.sender, signer.address());
        prop_assert_eq!(opened.seq, seq);
        prop_assert_eq!(opened.sent_at_ms, now_ms);
        prop_assert_eq!(opened.message, message);
    }

    #[test]
    fn a_mutated_envelope_is_refused_or_is_the_original(
        message in message(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let wire = Envelope::seal(&signer(), TOPIC, 1, 2, &message).unwrap();
        let mut mutated = wire.clone();
        for (index, value) in edits {
            let i = index.index(mutated.len());
            mutated[i] = value;
        }
        match Envelope::open(&mutated, TOPIC) {
            Ok(opened) => {
                prop_assert_eq!(&mutated, &wire);
                prop_assert_eq!(opened.message, message);
            }
            Err(_) => prop_assert_ne!(&mutated, &wire),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn open_never_panics_on_payloads_near_the_size_limit(
        len in (MAX_ENVELOPE_BYTES - 64)..=(MAX_ENVELOPE_BYTES + 64),
        seed in any::<u64>(),
        body_len_prefix in any::<bool>(),
    ) {
        // A cheap deterministic filler: generating 256 KiB per case through proptest is slow.
        let mut state = seed | 1;
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        bytes[0] = PROTOCOL_VERSION;
        if body_len_prefix && len > 30 {
            // version, kind, sender, seq, sent_at, then a body length claiming the rest.
            bytes[1] = 1;
            bytes[22] = 1;
            bytes[23] = 1;
            bytes[24] = 0xff;
            bytes[25] = 0xff;
            bytes[26] = 0x0f;
        }
        let result = Envelope::open(&bytes, TOPIC);
        prop_assert!(result.is_err());
        if len > MAX_ENVELOPE_BYTES {
            prop_assert_eq!(result.unwrap_err().reason(), "too_large");
        }
    }
}
