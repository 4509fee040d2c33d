#![allow(clippy::unwrap_used)]

use edgepool_attestation::software::SoftwareAttester;
use edgepool_attestation::Attester;
use edgepool_protocol::dataset::DatasetKey;
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::{AppRef, DatasetRef, SecretRequest};
use edgepool_protocol::poco::{self, WorkerpoolAuthorization};
use edgepool_protocol::primitives::{DealId, Digest};
use edgepool_protocol::sms::{ephemeral_key, unseal, web2_secret_challenge, web3_secret_challenge};
use edgepool_protocol::tags::Tag;

use super::*;

const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

struct World {
    sms: Sms,
    scheduler: Signer,
    worker: Signer,
    owner: Signer,
    attester: SoftwareAttester,
    _dir: tempfile::TempDir,
}

fn deal(seed: u8) -> DealSummary {
    DealSummary {
        deal_id: DealId::from([seed; 32]),
        app: AppRef {
            address: Address([0xa1; 20]),
            url: "http://127.0.0.1/app.wasm".into(),
            checksum: Digest(sha256(b"app")),
            size_bytes: None,
        },
        dataset: Some(DatasetRef {
            address: Address([0xd1; 20]),
            url: "http://127.0.0.1/data".into(),
            checksum: Digest(sha256(b"data")),
            filename: "data.csv".into(),
            size_bytes: None,
            encrypted: true,
        }),
        input_files: Vec::new(),
        args: String::new(),
        tag: Tag::encode(&["tee"]).unwrap(),
        trust: 1,
        category: 0,
        time_ref_seconds: 60,
        start_time_ms: 0,
        requester: Address([0x4e; 20]),
        beneficiary: Address([0xbe; 20]),
        callback: Address::ZERO,
        result_encryption: false,
        result_storage_provider: "ipfs".into(),
        result_storage_proxy: None,
        bot_first: 0,
        bot_size: 1,
    }
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = Signer::from_bytes(&[0x5c; 32]).unwrap();
    let worker = Signer::from_bytes(&[0x77; 32]).unwrap();
    let owner = Signer::from_bytes(&[0x0d; 32]).unwrap();
    let mut sms = Sms::new(scheduler.address(), Policy::simulator());
    let dataset = Address([0xd1; 20]);
    let signature = owner.sign_personal(web3_secret_challenge(&dataset, KEY_B64).as_bytes());
    sms.secrets_mut()
        .push_dataset_secret(dataset, owner.address(), KEY_B64, &signature)
        .unwrap();
    let attester = SoftwareAttester::open_or_create(&dir.path().join("device.key")).unwrap();
    World {
        sms,
        scheduler,
        worker,
        owner,
        attester,
        _dir: dir,
    }
}

fn context(deal: &DealSummary) -> TaskContext {
    TaskContext {
        task_id: poco::task_id(&deal.deal_id, 0),
        deal: deal.clone(),
        workerpool: Address([0x11; 20]),
        active: true,
        dataset_restrictions: DatasetRestrictions::default(),
    }
}

/// A request for task 0 of `deal` and the private key that opens the answer.
fn request(
    w: &mut World,
    deal: &DealSummary,
) -> (SecretRequest, ring::agreement::EphemeralPrivateKey) {
    let task_id = poco::task_id(&deal.deal_id, 0);
    let challenge = w.sms.enclave_challenge(task_id).unwrap();
    let authorization =
        WorkerpoolAuthorization::sign(&w.scheduler, w.worker.address(), task_id, challenge);
    let (private, public) = ephemeral_key(&ring::rand::SystemRandom::new()).unwrap();
    let mut request = SecretRequest {
        task_id,
        authorization,
        enclave_challenge: challenge,
        ephemeral_public_key: public,
        app_checksum: deal.app.checksum,
        evidence: edgepool_protocol::messages::Evidence {
            kind: edgepool_protocol::messages::EvidenceKind::Software,
            report: vec![0],
            aux: Vec::new(),
        },
    };
    request.evidence = w.attester.attest(&request.report_data()).unwrap();
    (request, private)
}

fn refusal(w: &World, request: &SecretRequest, ctx: &TaskContext) -> Refusal {
    w.sms
        .release(request, w.worker.address(), ctx, 0)
        .unwrap_err()
}

#[test]
fn an_attested_bound_request_gets_the_dataset_and_enclave_keys() {
    let mut w = world();
    let deal = deal(1);
    let (request, private) = request(&mut w, &deal);
    let response = w
        .sms
        .handle(&request, w.worker.address(), &context(&deal), 0);
    let secrets = unseal(
        private,
        &response.result,
        &request.task_id,
        &request.enclave_challenge,
    )
    .unwrap();
    assert_eq!(
        secrets.dataset_key,
        Some(*DatasetKey::from_base64(KEY_B64).unwrap().as_bytes())
    );
    let enclave = Signer::from_bytes(&secrets.enclave_key).unwrap();
    assert_eq!(enclave.address(), request.enclave_challenge);
    assert_eq!(secrets.beneficiary_key, None);
}

#[test]
fn the_enclave_challenge_is_made_once_per_task() {
    let mut w = world();
    let a = w.sms.enclave_challenge(TaskId::from([1; 32])).unwrap();
    assert_eq!(a, w.sms.enclave_challenge(TaskId::from([1; 32])).unwrap());
    assert_ne!(a, w.sms.enclave_challenge(TaskId::from([2; 32])).unwrap());
    assert!(!a.is_zero());
}

#[test]
fn evidence_replayed_from_another_task_fails_the_binding() {
    let mut w = world();
    let (first, _) = request(&mut w, &deal(1));
    let other_deal = deal(2);
    let (mut second, _) = request(&mut w, &other_deal);
    second.evidence = first.evidence.clone();
    let found = refusal(&w, &second, &context(&other_deal));
    assert_eq!(found, Refusal::Binding);
    assert_eq!(found.code(), RefusalCode::Binding);
}

#[test]
fn a_secret_request_made_for_one_task_is_refused_for_another() {
    let mut w = world();
    let (first, _) = request(&mut w, &deal(1));
    let other_deal = deal(2);
    let other_ctx = context(&other_deal);
    let (second, _) = request(&mut w, &other_deal);

    // Task A's whole request, byte for byte, presented where task B is looked up.
    assert!(matches!(
        refusal(&w, &first, &other_ctx),
        Refusal::WrongTask { .. }
    ));
    // Task A's request relabelled as task B: the authorization inside still names task A, so
    // the request does not even hold together.
    let mut relabelled = first.clone();
    relabelled.task_id = second.task_id;
    assert_eq!(
        refusal(&w, &relabelled, &other_ctx).code(),
        RefusalCode::Malformed
    );
    // Task A's authorization and challenge inside an otherwise fresh request for task B.
    let mut borrowed = second.clone();
    borrowed.authorization = first.authorization;
    borrowed.enclave_challenge = first.enclave_challenge;
    assert_eq!(
        refusal(&w, &borrowed, &other_ctx).code(),
        RefusalCode::Malformed
    );
    // Task A's authorization re-signed by the real scheduler for task B but with A's
    // challenge: the SMS made that challenge for A only.
    let mut moved = second.clone();
    moved.enclave_challenge = first.enclave_challenge;
    moved.authorization = WorkerpoolAuthorization::sign(
        &w.scheduler,
        w.worker.address(),
        second.task_id,
        first.enclave_challenge,
    );
    assert!(matches!(
        refusal(&w, &moved, &other_ctx),
        Refusal::UnknownChallenge { .. }
    ));
    // Task A's request again once task A is over.
    let mut over = context(&deal(1));
    over.active = false;
    assert!(matches!(
        refusal(&w, &first, &over),
        Refusal::TaskNotActive(_)
    ));
    // And task B's own request still gets its secrets: refusals changed nothing.
    assert!(w
        .sms
        .release(&second, w.worker.address(), &other_ctx, 0)
        .is_ok());
}

#[test]
fn evidence_replayed_with_another_ephemeral_key_fails_the_binding() {
    let mut w = world();
    let deal = deal(1);
    let (mut request, _) = request(&mut w, &deal);
    let (_, attacker) = ephemeral_key(&ring::rand::SystemRandom::new()).unwrap();
    request.ephemeral_public_key = attacker;
    assert_eq!(refusal(&w, &request, &context(&deal)), Refusal::Binding);
}

#[test]
fn software_evidence_is_refused_under_the_hardware_only_policy() {
    let mut w = world();
    w.sms.set_policy(Policy::default());
    let deal = deal(1);
    let (request, _) = request(&mut w, &deal);
    let found = refusal(&w, &request, &context(&deal));
    assert_eq!(found, Refusal::Policy(PolicyError::SoftwareNotAllowed));
    let response = w
        .sms
        .handle(&request, w.worker.address(), &context(&deal), 0);
    match response.result {
        SecretResult::Refused { reason } => {
            assert_eq!(RefusalCode::of_reason(&reason), Some(RefusalCode::Policy))
        }
        other => panic!("released: {other:?}"),
    }
}

#[test]
fn a_wrong_app_checksum_is_refused() {
    let mut w = world();
    let deal = deal(1);
    let (mut request, _) = request(&mut w, &deal);
    request.app_checksum = Digest(sha256(b"other app"));
    request.evidence = w.attester.attest(&request.report_data()).unwrap();
    assert!(matches!(
        refusal(&w, &request, &context(&deal)),
        Refusal::AppChecksum { .. }
    ));
}

#[test]
fn a_dataset_order_restricted_to_another_app_workerpool_or_requester_is_refused() {
    let mut w = world();
    let deal = deal(1);
    let (request, _) = request(&mut w, &deal);
    for (field, restrictions) in [
        (
            "app",
            DatasetRestrictions {
                app: Address([0xee; 20]),
                ..Default::default()
            },
        ),
        (
            "workerpool",
            DatasetRestrictions {
                workerpool: Address([0xee; 20]),
                ..Default::default()
            },
        ),
        (
            "requester",
            DatasetRestrictions {
                requester: Address([0xee; 20]),
                ..Default::default()
            },
        ),
    ] {
        let mut ctx = context(&deal);
        ctx.dataset_restrictions = restrictions;
        match refusal(&w, &request, &ctx) {
            Refusal::DatasetRestricted { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut ctx = context(&deal);
    ctx.dataset_restrictions = DatasetRestrictions {
        app: deal.app.address,
        workerpool: ctx.workerpool,
        requester: deal.requester,
    };
    assert!(w.sms.release(&request, w.worker.address(), &ctx, 0).is_ok());
}

#[test]
fn authorization_task_and_challenge_checks_come_first() {
    let mut w = world();
    let deal = deal(1);
    let (request, _) = request(&mut w, &deal);
    let ctx = context(&deal);
    // Another sender than the authorized worker.
    assert!(matches!(
        w.sms.release(&request, Address([9; 20]), &ctx, 0),
        Err(Refusal::AuthorizationForOtherWorker { .. })
    ));
    // An authorization signed by someone else.
    let mut forged = request.clone();
    forged.authorization = WorkerpoolAuthorization::sign(
        &w.owner,
        w.worker.address(),
        request.task_id,
        request.enclave_challenge,
    );
    assert_eq!(
        refusal(&w, &forged, &ctx).code(),
        RefusalCode::Authorization
    );
    // An inactive task, a non-TEE deal.
    let mut inactive = ctx.clone();
    inactive.active = false;
    assert!(matches!(
        refusal(&w, &request, &inactive),
        Refusal::TaskNotActive(_)
    ));
    let mut standard = ctx.clone();
    standard.deal.tag = Tag::NONE;
    assert!(matches!(
        refusal(&w, &request, &standard),
        Refusal::NotTee(_)
    ));
    // A challenge the SMS did not make for this task (signed by the scheduler all the same).
    let mut other = request.clone();
    other.enclave_challenge = Address([0x42; 20]);
    other.authorization = WorkerpoolAuthorization::sign(
        &w.scheduler,
        w.worker.address(),
        request.task_id,
        other.enclave_challenge,
    );
    assert!(matches!(
        refusal(&w, &other, &ctx),
        Refusal::UnknownChallenge { .. }
    ));
}

#[test]
fn a_missing_dataset_or_beneficiary_secret_is_refused() {
    let mut w = world();
    let mut deal = deal(1);
    deal.dataset.as_mut().unwrap().address = Address([0xd2; 20]);
    let (request, _) = request(&mut w, &deal);
    assert_eq!(
        refusal(&w, &request, &context(&deal)),
        Refusal::DatasetSecretMissing(Address([0xd2; 20]))
    );
    let mut deal = self::deal(3);
    deal.result_encryption = true;
    let (request, _) = self::request(&mut w, &deal);
    assert_eq!(
        refusal(&w, &request, &context(&deal)),
        Refusal::ResultKeyMissing(deal.beneficiary)
    );
}

#[test]
fn the_beneficiary_key_is_released_when_results_are_encrypted() {
    let mut w = world();
    let beneficiary = Signer::from_bytes(&[0xbe; 32]).unwrap();
    let pem = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n";
    let challenge = web2_secret_challenge(
        &beneficiary.address(),
        "iexec-result-encryption-public-key",
        pem,
    );
    let signature = beneficiary.sign_personal(challenge.as_bytes());
    w.sms
        .secrets_mut()
        .push_result_encryption_key(beneficiary.address(), pem, &signature)
        .unwrap();
    let mut deal = deal(1);
    deal.result_encryption = true;
    deal.beneficiary = beneficiary.address();
    let (request, private) = request(&mut w, &deal);
    let response = w
        .sms
        .handle(&request, w.worker.address(), &context(&deal), 0);
    let secrets = unseal(
        private,
        &response.result,
        &request.task_id,
        &request.enclave_challenge,
    )
    .unwrap();
    assert_eq!(secrets.beneficiary_key.as_deref(), Some(pem));
}

#[test]
fn pushes_need_the_owner_signature_a_valid_key_and_never_overwrite() {
    let mut w = world();
    let dataset = Address([0xd1; 20]);
    let signature = w
        .owner
        .sign_personal(web3_secret_challenge(&dataset, KEY_B64).as_bytes());
    assert_eq!(
        w.sms
            .secrets_mut()
            .push_dataset_secret(dataset, w.owner.address(), KEY_B64, &signature),
        Err(PushError::AlreadyExists(dataset))
    );
    let fresh = Address([0xd3; 20]);
    // Signed over another dataset's challenge.
    assert!(matches!(
        w.sms
            .secrets_mut()
            .push_dataset_secret(fresh, w.owner.address(), KEY_B64, &signature),
        Err(PushError::Signature { .. })
    ));
    // Signed by someone who is not the owner.
    let by_worker = w
        .worker
        .sign_personal(web3_secret_challenge(&fresh, KEY_B64).as_bytes());
    assert!(matches!(
        w.sms
            .secrets_mut()
            .push_dataset_secret(fresh, w.owner.address(), KEY_B64, &by_worker),
        Err(PushError::Signature { .. })
    ));
    // Not a 32-byte key.
    let short = "AAEC";
    let signed = w
        .owner
        .sign_personal(web3_secret_challenge(&fresh, short).as_bytes());
    assert_eq!(
        w.sms
            .secrets_mut()
            .push_dataset_secret(fresh, w.owner.address(), short, &signed),
        Err(PushError::InvalidDatasetKey)
    );
    assert!(!w.sms.secrets().has_dataset_secret(&fresh));
}

#[test]
fn debug_never_shows_secret_values() {
    let w = world();
    let text = format!("{:?}", w.sms);
    assert!(!text.contains(KEY_B64), "{text}");
}
