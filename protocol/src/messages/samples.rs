//! One valid message of every kind, built from the poco-1 case of
//! `tests/data/iexec/vectors.json` (scheduler and worker keys, deal, task).
#![allow(clippy::unwrap_used)]

use super::*;
use crate::poco::{self, WorkerpoolAuthorization};
use crate::primitives::{Address, DealId};
use crate::signature::Signer;
use crate::tags::Tag;

/// The poco-1 scheduler (workerpool owner), `0xd468FCcea3cBdAA0049dffD96DE792737b3Ae685`.
pub fn scheduler() -> Signer {
    Signer::from_hex("0x3dc94d52a43483b3a074daf58a6c5909fb4cbe89e8fbfafbebefe993ce7aabbe").unwrap()
}

/// The poco-1 worker, `0x0d8B662f44741b155626E10632F2239a5B3cADeA`.
pub fn worker() -> Signer {
    Signer::from_hex("0x8f7078e6b7e655597ef3eed5e43f048afaa670e5c72942176cbf6bcfd5085daa").unwrap()
}

/// The poco-1 task, `0xf8eb…01ae`.
pub fn task_id() -> TaskId {
    poco::task_id(&deal_id(), 0)
}

fn deal_id() -> DealId {
    "0x4836f415c3f0928feced20508ed5731f19639cfa05bc54a06d7424b23ebcc0c0"
        .parse()
        .unwrap()
}

pub fn capacity() -> CapacityAdvertisement {
    CapacityAdvertisement {
        worker: worker().address(),
        agent_version: "edgepool-agent 0.1.0".into(),
        cpu: CpuInfo {
            model: "AMD EPYC 9654".into(),
            cores: 8,
            threads: 16,
            arch: "x86_64".into(),
        },
        ram_bytes: 32 << 30,
        disk_free_bytes: 200 << 30,
        gpus: vec![GpuInfo {
            vendor: "nvidia".into(),
            model: "L4".into(),
            memory_bytes: Some(24 << 30),
        }],
        tee: Some(TeeKind::SevSnp),
        tee_measurement: vec![0x5e; 48],
        tags: Tag::encode(&["tee", "gpu"]).unwrap(),
        slots: 4,
        limits: TaskLimits::default(),
        fuel_per_second: 400_000_000,
    }
}

pub fn assignment() -> Assignment {
    let task_id = task_id();
    Assignment {
        deal: DealSummary {
            deal_id: deal_id(),
            app: AppRef {
                address: Address([0xa1; 20]),
                url: "https://apps.example/hello.wasm".into(),
                checksum: Digest::from([0xc1; 32]),
                size_bytes: Some(220_000),
            },
            dataset: Some(DatasetRef {
                address: Address([0xd1; 20]),
                url: "https://data.example/set.bin.enc".into(),
                checksum: Digest::from([0xc2; 32]),
                filename: "set.bin".into(),
                size_bytes: None,
                encrypted: true,
            }),
            input_files: vec!["https://data.example/in1.txt".into()],
            args: "--greeting 'hello world'".into(),
            tag: Tag::NONE,
            trust: 1,
            category: 0,
            time_ref_seconds: 300,
            start_time_ms: 1_700_000_000_000,
            requester: Address([0x51; 20]),
            beneficiary: Address([0x52; 20]),
            callback: Address::ZERO,
            result_encryption: false,
            result_storage_provider: "ipfs".into(),
            result_storage_proxy: None,
            bot_first: 0,
            bot_size: 1,
        },
        task_index: 0,
        task_id,
        authorization: WorkerpoolAuthorization::sign(
            &scheduler(),
            worker().address(),
            task_id,
            Address::ZERO,
        ),
        limits: TaskLimits::default(),
    }
}

pub fn secret_request() -> SecretRequest {
    let challenge = Signer::from_bytes(&[9; 32]).unwrap().address();
    SecretRequest {
        task_id: task_id(),
        authorization: WorkerpoolAuthorization::sign(
            &scheduler(),
            worker().address(),
            task_id(),
            challenge,
        ),
        enclave_challenge: challenge,
        ephemeral_public_key: [0x5e; 32],
        app_checksum: Digest::from([0xc1; 32]),
        evidence: Evidence {
            kind: EvidenceKind::Software,
            report: vec![0xee; 1184],
            aux: Vec::new(),
        },
    }
}

pub fn secret_response() -> SecretResponse {
    SecretResponse {
        task_id: task_id(),
        ephemeral_public_key: [0x3e; 32],
        result: SecretResult::Sealed {
            sender_public_key: [0x5f; 32],
            nonce: [7; 12],
            ciphertext: vec![0xab; 96],
        },
    }
}

/// One message of every kind, in [`MessageKind::ALL`] order.
pub fn all() -> Vec<Message> {
    let task_id = task_id();
    let digest = Digest::from([0xdd; 32]);
    vec![
        Message::Capacity(capacity()),
        Message::Heartbeat(Heartbeat {
            running_tasks: 1,
            free_slots: 3,
            free_memory_bytes: 16 << 30,
            free_disk_bytes: 100 << 30,
            accepting: true,
        }),
        Message::Assignment(assignment()),
        Message::Notification(Notification {
            task_id,
            kind: crate::status::NotificationType::PleaseReveal,
            deadline_ms: Some(1_700_000_600_000),
            detail: None,
        }),
        Message::Accept(Accept { task_id }),
        Message::Decline(Decline {
            task_id,
            cause: ReplicateStatusCause::NoFreeSlot,
            detail: "all 4 slots busy".into(),
        }),
        Message::StatusUpdate(StatusUpdate {
            task_id,
            status: ReplicateStatus::Computing,
            cause: None,
            detail: Some("fuel 1000".into()),
            at_ms: 1_700_000_001_000,
        }),
        Message::Contribution(Contribution::standard(
            worker().address(),
            task_id,
            digest,
            123_456,
        )),
        Message::Reveal(Reveal {
            task_id,
            result_digest: digest,
        }),
        Message::ResultUploaded(ResultUploaded {
            task_id,
            result_link: "ipfs://bafybeigdyrzt".into(),
        }),
        Message::SecretRequest(secret_request()),
        Message::SecretResponse(secret_response()),
    ]
}
