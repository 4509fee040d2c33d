#![allow(clippy::unwrap_used)]

use edgepool_protocol::messages::{
    Accept, AppRef, Contribution, DealSummary, Decline, Message, ResultUploaded, Reveal, TaskLimits,
};
use edgepool_protocol::primitives::{Address, DealId, Digest};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::status::{NotificationType, ReplicateStatusCause};
use edgepool_protocol::tags::Tag;

use super::*;

const T0: u64 = 1_700_000_000_000;

fn deal(trust: u64) -> DealSummary {
    DealSummary {
        deal_id: DealId::from([7; 32]),
        app: AppRef {
            address: Address([0xa1; 20]),
            url: "http://127.0.0.1:1/app.wasm".into(),
            checksum: Digest::from([1; 32]),
            size_bytes: None,
        },
        dataset: None,
        input_files: Vec::new(),
        args: String::new(),
        tag: Tag::NONE,
        trust,
        category: 0,
        time_ref_seconds: 10,
        start_time_ms: T0,
        requester: Address([0x51; 20]),
        beneficiary: Address([0x52; 20]),
        callback: Address::ZERO,
        result_encryption: false,
        result_storage_provider: "ipfs".into(),
        result_storage_proxy: None,
        bot_first: 0,
        bot_size: 2,
    }
}

fn worker(n: u8) -> Signer {
    Signer::from_bytes(&[n; 32]).unwrap()
}

fn scheduler() -> Scheduler {
    Scheduler::new(Signer::from_bytes(&[99; 32]).unwrap())
}

fn notifications(actions: &[Action]) -> Vec<(Address, NotificationType)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                worker,
                message: Message::Notification(n),
            } => Some((*worker, n.kind)),
            _ => None,
        })
        .collect()
}

fn assign(s: &mut Scheduler, d: &DealSummary, w: &Signer) -> TaskId {
    let actions = s
        .assign(d, 0, w.address(), TaskLimits::default(), Address::ZERO, T0)
        .unwrap();
    match &actions[..] {
        [Action::Send {
            worker,
            message: Message::Assignment(a),
        }] => {
            assert_eq!(*worker, w.address());
            a.verify(s.address(), w.address()).unwrap();
            a.task_id
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_single_worker_task_goes_from_assignment_to_completion() {
    let mut s = scheduler();
    let d = deal(1);
    let w = worker(1);
    let task_id = assign(&mut s, &d, &w);
    let me = w.address();
    assert!(s
        .handle(me, &Message::Accept(Accept { task_id }), T0)
        .unwrap()
        .is_empty());
    let digest = Digest::from([3; 32]);
    let contribution = Contribution::standard(me, task_id, digest, 42);
    let actions = s
        .handle(me, &Message::Contribution(contribution.clone()), T0 + 1)
        .unwrap();
    assert_eq!(
        notifications(&actions),
        vec![(me, NotificationType::PleaseReveal)]
    );
    // A redelivered contribution changes nothing.
    assert!(s
        .handle(me, &Message::Contribution(contribution), T0 + 2)
        .unwrap()
        .is_empty());
    let reveal = Message::Reveal(Reveal {
        task_id,
        result_digest: digest,
    });
    let actions = s.handle(me, &reveal, T0 + 3).unwrap();
    assert_eq!(
        notifications(&actions),
        vec![(me, NotificationType::PleaseUpload)]
    );
    assert!(s.handle(me, &reveal, T0 + 4).unwrap().is_empty());
    let uploaded = Message::ResultUploaded(ResultUploaded {
        task_id,
        result_link: "http://store/result".into(),
    });
    let actions = s.handle(me, &uploaded, T0 + 5).unwrap();
    assert!(
        matches!(&actions[0], Action::Finalized { result_link, .. } if result_link == "http://store/result")
    );
    assert_eq!(
        notifications(&actions),
        vec![(me, NotificationType::PleaseComplete)]
    );
    assert!(matches!(
        s.task(&task_id).unwrap().phase,
        Phase::Finalized { .. }
    ));
}

#[test]
fn consensus_needs_trust_agreeing_contributions_and_aborts_the_dissenter() {
    let mut s = scheduler();
    let d = deal(2);
    let (a, b, c) = (worker(1), worker(2), worker(3));
    let task_id = assign(&mut s, &d, &a);
    assign(&mut s, &d, &b);
    assign(&mut s, &d, &c);
    let good = Digest::from([3; 32]);
    let bad = Digest::from([4; 32]);
    let send = |s: &mut Scheduler, w: &Signer, digest: Digest| {
        s.handle(
            w.address(),
            &Message::Contribution(Contribution::standard(w.address(), task_id, digest, 1)),
            T0 + 10,
        )
        .unwrap()
    };
    assert!(send(&mut s, &a, good).is_empty());
    assert!(send(&mut s, &c, bad).is_empty());
    let actions = send(&mut s, &b, good);
    let mut got = notifications(&actions);
    got.sort();
    let mut want = vec![
        (a.address(), NotificationType::PleaseReveal),
        (b.address(), NotificationType::PleaseReveal),
        (c.address(), NotificationType::PleaseAbortConsensusReached),
    ];
    want.sort();
    assert_eq!(got, want);
    // The dissenter cannot reveal the consensus digest it did not compute... nor its own.
    let err = s
        .handle(
            c.address(),
            &Message::Reveal(Reveal {
                task_id,
                result_digest: bad,
            }),
            T0 + 11,
        )
        .unwrap_err();
    assert!(matches!(err, SchedulerError::Conflict { .. }), "{err}");
}

#[test]
fn with_ledger_consensus_only_reach_consensus_moves_the_task_to_revealing() {
    let mut s = scheduler();
    s.set_ledger_consensus(true);
    let d = deal(1);
    let (a, b) = (worker(1), worker(2));
    let task_id = assign(&mut s, &d, &a);
    assign(&mut s, &d, &b);
    let good = Digest::from([3; 32]);
    let bad = Digest::from([4; 32]);
    for (w, digest) in [(&a, good), (&b, bad)] {
        let actions = s
            .handle(
                w.address(),
                &Message::Contribution(Contribution::standard(w.address(), task_id, digest, 1)),
                T0 + 10,
            )
            .unwrap();
        // Trust 1 would have been reached by a count: the ledger decides instead.
        assert!(actions.is_empty(), "{actions:?}");
    }
    assert_eq!(s.task(&task_id).unwrap().phase, Phase::Contributing);
    let hash = poco::result_hash(&task_id, &good);
    let mut got = notifications(&s.reach_consensus(&task_id, hash, T0 + 11));
    got.sort();
    let mut want = vec![
        (a.address(), NotificationType::PleaseReveal),
        (b.address(), NotificationType::PleaseAbortConsensusReached),
    ];
    want.sort();
    assert_eq!(got, want);
    // Once revealing, a second call changes nothing.
    assert!(s.reach_consensus(&task_id, hash, T0 + 12).is_empty());
}

#[test]
fn refusals_leave_the_state_unchanged() {
    let mut s = scheduler();
    let d = deal(1);
    let w = worker(1);
    let task_id = assign(&mut s, &d, &w);
    let stranger = worker(5);
    let contribution =
        Contribution::standard(stranger.address(), task_id, Digest::from([3; 32]), 1);
    assert!(matches!(
        s.handle(
            stranger.address(),
            &Message::Contribution(contribution.clone()),
            T0
        ),
        Err(SchedulerError::NotAssigned { .. })
    ));
    // Hashes computed for another worker are refused.
    assert!(matches!(
        s.handle(w.address(), &Message::Contribution(contribution), T0),
        Err(SchedulerError::BadContribution(_))
    ));
    // A reveal before consensus is out of order.
    assert!(matches!(
        s.handle(
            w.address(),
            &Message::Reveal(Reveal {
                task_id,
                result_digest: Digest::from([3; 32])
            }),
            T0
        ),
        Err(SchedulerError::Unexpected { .. })
    ));
    // Two different contributions from one worker conflict.
    let first = Contribution::standard(w.address(), task_id, Digest::from([3; 32]), 1);
    s.handle(w.address(), &Message::Contribution(first), T0)
        .unwrap();
    let second = Contribution::standard(w.address(), task_id, Digest::from([9; 32]), 1);
    assert!(matches!(
        s.handle(w.address(), &Message::Contribution(second), T0),
        Err(SchedulerError::Conflict { .. })
    ));
    assert!(matches!(
        s.assign(&d, 0, w.address(), TaskLimits::default(), Address::ZERO, T0),
        Err(SchedulerError::AlreadyAssigned { .. })
    ));
    assert!(matches!(
        s.assign(&d, 2, w.address(), TaskLimits::default(), Address::ZERO, T0),
        Err(SchedulerError::IndexOutsideDeal { .. })
    ));
}

#[test]
fn deadlines_abort_the_task() {
    let mut s = scheduler();
    let d = deal(1);
    let w = worker(1);
    let task_id = assign(&mut s, &d, &w);
    assert!(s.tick(d.contribution_deadline_ms()).is_empty());
    let actions = s.tick(d.contribution_deadline_ms() + 1);
    assert_eq!(
        notifications(&actions),
        vec![(
            w.address(),
            NotificationType::PleaseAbortContributionTimeout
        )]
    );
    assert!(matches!(actions.last(), Some(Action::Failed { .. })));
    assert!(matches!(s.task(&task_id).unwrap().phase, Phase::Failed(_)));
    assert!(
        s.tick(d.final_deadline_ms()).is_empty(),
        "a failed task stays failed"
    );
}

#[test]
fn a_task_every_worker_declined_fails() {
    let mut s = scheduler();
    let d = deal(1);
    let w = worker(1);
    let task_id = assign(&mut s, &d, &w);
    let decline = Message::Decline(Decline {
        task_id,
        cause: ReplicateStatusCause::ALL[0],
        detail: "no slot".into(),
    });
    let actions = s.handle(w.address(), &decline, T0).unwrap();
    assert!(matches!(&actions[..], [Action::Failed { .. }]));
}

#[test]
fn with_someone_replacing_declined_replicas_a_task_every_worker_declined_keeps_contributing() {
    let mut s = scheduler();
    s.set_replaces_declined(true);
    let d = deal(1);
    let (w, other) = (worker(1), worker(2));
    let task_id = assign(&mut s, &d, &w);
    let decline = Message::Decline(Decline {
        task_id,
        cause: ReplicateStatusCause::NoFreeSlot,
        detail: "no slot".into(),
    });
    assert!(s.handle(w.address(), &decline, T0).unwrap().is_empty());
    assert_eq!(s.task(&task_id).unwrap().phase, Phase::Contributing);
    // Placed elsewhere, it completes.
    assign(&mut s, &d, &other);
    let c = Contribution::standard(other.address(), task_id, Digest::from([3; 32]), 1);
    let actions = s
        .handle(other.address(), &Message::Contribution(c), T0 + 1)
        .unwrap();
    assert_eq!(
        notifications(&actions),
        vec![(other.address(), NotificationType::PleaseReveal)]
    );
}

#[test]
fn a_contributor_that_reveals_after_the_upload_is_told_to_complete_and_a_silent_one_aborted() {
    let mut s = scheduler();
    let d = deal(2);
    let (a, b, c) = (worker(1), worker(2), worker(3));
    let task_id = assign(&mut s, &d, &a);
    assign(&mut s, &d, &b);
    assign(&mut s, &d, &c);
    let digest = Digest::from([3; 32]);
    for w in [&a, &b, &c] {
        let contribution = Contribution::standard(w.address(), task_id, digest, 1);
        s.handle(w.address(), &Message::Contribution(contribution), T0 + 1)
            .unwrap();
    }
    let reveal = Message::Reveal(Reveal {
        task_id,
        result_digest: digest,
    });
    s.handle(b.address(), &reveal, T0 + 2).unwrap();
    let uploaded = Message::ResultUploaded(ResultUploaded {
        task_id,
        result_link: "http://store/result".into(),
    });
    let actions = s.handle(b.address(), &uploaded, T0 + 3).unwrap();
    assert!(matches!(actions[0], Action::Finalized { .. }));
    // `a` (its agent was down) reveals now: final for the scheduler, so it just completes.
    let actions = s.handle(a.address(), &reveal, T0 + 4).unwrap();
    assert_eq!(
        notifications(&actions),
        vec![(a.address(), NotificationType::PleaseComplete)]
    );
    assert!(s.handle(a.address(), &reveal, T0 + 5).unwrap().is_empty());
    // A wrong digest is still refused.
    let wrong = Message::Reveal(Reveal {
        task_id,
        result_digest: Digest::from([4; 32]),
    });
    assert!(s.handle(c.address(), &wrong, T0 + 6).is_err());
    // `c` never reveals: the pool gives up on it once the ledger settled.
    assert!(s.abort_reveal(&task_id, c.address()));
    assert!(!s.abort_reveal(&task_id, c.address()));
    assert!(!s.abort_reveal(&task_id, a.address()));
    assert!(s.handle(c.address(), &reveal, T0 + 7).is_err());
}

mod tee {
    use edgepool_attestation::policy::Policy;
    use edgepool_attestation::software::SoftwareAttester;
    use edgepool_attestation::Attester;
    use edgepool_protocol::messages::{Evidence, EvidenceKind, SecretRequest, SecretResult};
    use edgepool_protocol::sms::{ephemeral_key, unseal, RefusalCode};

    use super::*;
    use crate::sms::Sms;

    fn tee_scheduler() -> Scheduler {
        let signer = Signer::from_bytes(&[99; 32]).unwrap();
        let sms = Sms::new(signer.address(), Policy::simulator());
        Scheduler::new(signer).with_sms(sms, Address([0x11; 20]))
    }

    fn tee_deal() -> DealSummary {
        let mut d = deal(1);
        d.tag = Tag::encode(&["tee"]).unwrap();
        d
    }

    /// Assigns, asks the SMS for the secrets and returns the assignment and the enclave key.
    fn assign_and_release(s: &mut Scheduler, w: &Signer, d: &DealSummary) -> (TaskId, Signer) {
        let actions = s
            .assign(d, 0, w.address(), TaskLimits::default(), Address::ZERO, T0)
            .unwrap();
        let Some(Action::Send {
            message: Message::Assignment(assignment),
            ..
        }) = actions.into_iter().next()
        else {
            panic!("no assignment");
        };
        assert!(assignment.authorization.is_tee());
        assert_eq!(
            s.task(&assignment.task_id).unwrap().enclave_challenge,
            assignment.authorization.enclave_challenge
        );
        let dir = tempfile::tempdir().unwrap();
        let attester = SoftwareAttester::open_or_create(&dir.path().join("k")).unwrap();
        let (private, public) = ephemeral_key(&ring::rand::SystemRandom::new()).unwrap();
        let mut request = SecretRequest {
            task_id: assignment.task_id,
            authorization: assignment.authorization,
            enclave_challenge: assignment.authorization.enclave_challenge,
            ephemeral_public_key: public,
            app_checksum: d.app.checksum,
            evidence: Evidence {
                kind: EvidenceKind::Software,
                report: vec![0],
                aux: Vec::new(),
            },
        };
        request.evidence = attester.attest(&request.report_data()).unwrap();
        let actions = s
            .handle(
                w.address(),
                &Message::SecretRequest(request.clone()),
                T0 + 1,
            )
            .unwrap();
        let [Action::Send {
            worker,
            message: Message::SecretResponse(response),
        }] = &actions[..]
        else {
            panic!("{actions:?}");
        };
        assert_eq!(*worker, w.address());
        let secrets = unseal(
            private,
            &response.result,
            &request.task_id,
            &request.enclave_challenge,
        )
        .unwrap();
        (
            assignment.task_id,
            Signer::from_bytes(&secrets.enclave_key).unwrap(),
        )
    }

    #[test]
    fn a_tee_task_gets_its_challenge_from_the_sms_and_its_secrets_through_the_scheduler() {
        let mut s = tee_scheduler();
        let w = worker(1);
        let (task_id, enclave) = assign_and_release(&mut s, &w, &tee_deal());
        assert_eq!(
            enclave.address(),
            s.task(&task_id).unwrap().enclave_challenge
        );
    }

    #[test]
    fn a_tee_contribution_must_be_signed_by_the_tasks_enclave_key() {
        let mut s = tee_scheduler();
        let w = worker(1);
        let (task_id, enclave) = assign_and_release(&mut s, &w, &tee_deal());
        let digest = Digest::from([5; 32]);
        // Signed by another key: refused, state unchanged.
        let impostor = Signer::from_bytes(&[0x66; 32]).unwrap();
        let forged = Contribution::tee(w.address(), task_id, digest, &impostor, 1);
        assert!(matches!(
            s.handle(w.address(), &Message::Contribution(forged), T0 + 2),
            Err(SchedulerError::BadContribution(_))
        ));
        // A standard contribution to a TEE task: refused.
        let standard = Contribution::standard(w.address(), task_id, digest, 1);
        assert!(matches!(
            s.handle(w.address(), &Message::Contribution(standard), T0 + 2),
            Err(SchedulerError::BadContribution(_))
        ));
        // The challenge's claimed but the signature is by another key.
        let mut mismatched = Contribution::tee(w.address(), task_id, digest, &enclave, 1);
        mismatched.enclave_signature =
            Contribution::tee(w.address(), task_id, digest, &impostor, 1).enclave_signature;
        assert!(matches!(
            s.handle(w.address(), &Message::Contribution(mismatched), T0 + 2),
            Err(SchedulerError::BadContribution(_))
        ));
        let good = Contribution::tee(w.address(), task_id, digest, &enclave, 1);
        let actions = s
            .handle(w.address(), &Message::Contribution(good), T0 + 2)
            .unwrap();
        assert_eq!(
            notifications(&actions),
            vec![(w.address(), NotificationType::PleaseReveal)]
        );
    }

    #[test]
    fn the_sms_forgets_the_enclave_key_of_a_task_that_failed_or_finished() {
        let mut s = tee_scheduler();
        let d = tee_deal();
        let (a, b) = (worker(1), worker(2));
        let declined = assign(&mut s, &d, &a);
        let mut other = d.clone();
        other.deal_id = DealId::from([0x77; 32]);
        let timed_out = assign(&mut s, &other, &b);
        assert_eq!(s.sms().unwrap().enclave_count(), 2);
        // Every worker declined: failed through `handle`.
        let decline = Message::Decline(Decline {
            task_id: declined,
            cause: ReplicateStatusCause::ALL[0],
            detail: "no slot".into(),
        });
        let actions = s.handle(a.address(), &decline, T0).unwrap();
        assert!(matches!(&actions[..], [Action::Failed { .. }]));
        assert_eq!(s.sms().unwrap().enclave_count(), 1);
        // Its deadline passed: failed through `tick`.
        let actions = s.tick(other.contribution_deadline_ms() + 1);
        assert!(matches!(actions.last(), Some(Action::Failed { .. })));
        assert_eq!(s.sms().unwrap().enclave_count(), 0);
        assert!(matches!(
            s.task(&timed_out).unwrap().phase,
            Phase::Failed(_)
        ));
    }

    #[test]
    fn a_secret_request_after_the_contribution_is_refused_as_inactive() {
        let mut s = tee_scheduler();
        let w = worker(1);
        let d = tee_deal();
        let (task_id, enclave) = assign_and_release(&mut s, &w, &d);
        let good = Contribution::tee(w.address(), task_id, Digest::from([5; 32]), &enclave, 1);
        s.handle(w.address(), &Message::Contribution(good), T0 + 2)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let attester = SoftwareAttester::open_or_create(&dir.path().join("k")).unwrap();
        let run = s.task(&task_id).unwrap();
        let authorization = WorkerpoolAuthorization::sign(
            &Signer::from_bytes(&[99; 32]).unwrap(),
            w.address(),
            task_id,
            run.enclave_challenge,
        );
        let (_, public) = ephemeral_key(&ring::rand::SystemRandom::new()).unwrap();
        let mut request = SecretRequest {
            task_id,
            authorization,
            enclave_challenge: run.enclave_challenge,
            ephemeral_public_key: public,
            app_checksum: d.app.checksum,
            evidence: Evidence {
                kind: EvidenceKind::Software,
                report: vec![0],
                aux: Vec::new(),
            },
        };
        request.evidence = attester.attest(&request.report_data()).unwrap();
        let actions = s
            .handle(w.address(), &Message::SecretRequest(request), T0 + 3)
            .unwrap();
        let [Action::Send {
            message: Message::SecretResponse(response),
            ..
        }] = &actions[..]
        else {
            panic!("{actions:?}");
        };
        let SecretResult::Refused { reason } = &response.result else {
            panic!("released after the contribution");
        };
        assert_eq!(
            RefusalCode::of_reason(reason),
            Some(RefusalCode::TaskNotActive)
        );
    }

    #[test]
    fn a_secret_request_without_an_sms_or_from_an_unassigned_worker_is_an_error() {
        let mut s = scheduler();
        let d = tee_deal();
        let w = worker(1);
        let task_id = assign_with_challenge(&mut s, &d, &w);
        let request = edgepool_protocol::messages::SecretRequest {
            task_id,
            authorization: WorkerpoolAuthorization::sign(
                &Signer::from_bytes(&[99; 32]).unwrap(),
                w.address(),
                task_id,
                Address([3; 20]),
            ),
            enclave_challenge: Address([3; 20]),
            ephemeral_public_key: [1; 32],
            app_checksum: d.app.checksum,
            evidence: Evidence {
                kind: EvidenceKind::Software,
                report: vec![0],
                aux: Vec::new(),
            },
        };
        assert_eq!(
            s.handle(w.address(), &Message::SecretRequest(request.clone()), T0),
            Err(SchedulerError::NoSms(task_id))
        );
        assert!(matches!(
            s.handle(worker(2).address(), &Message::SecretRequest(request), T0),
            Err(SchedulerError::NotAssigned { .. })
        ));
    }

    fn assign_with_challenge(s: &mut Scheduler, d: &DealSummary, w: &Signer) -> TaskId {
        let actions = s
            .assign(
                d,
                0,
                w.address(),
                TaskLimits::default(),
                Address([3; 20]),
                T0,
            )
            .unwrap();
        match &actions[..] {
            [Action::Send {
                message: Message::Assignment(a),
                ..
            }] => a.task_id,
            other => panic!("{other:?}"),
        }
    }
}
