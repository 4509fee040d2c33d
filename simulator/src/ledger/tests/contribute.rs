//! The checks of `contribute`, deadlines and withdrawals.

use super::*;

#[test]
fn a_second_contribution_by_the_same_worker_is_refused() {
    let mut w = world();
    let (_, task) = active_task(&mut w, 3);
    contribute(&mut w, 0, task, digest(1), T0 + 1).unwrap();
    let before = w.ledger.state.clone();
    for result in [digest(1), digest(2)] {
        assert!(matches!(
            contribute(&mut w, 0, task, result, T0 + 2),
            Err(LedgerError::AlreadyContributed(a)) if a == w.workers[0].address()
        ));
    }
    assert_eq!(w.ledger.state, before);
}

#[test]
fn authorizations_must_be_the_workerpool_owners_for_this_worker_task_and_challenge() {
    let mut w = world();
    let (_, task) = active_task(&mut w, 1);
    let worker = w.workers[0].address();
    let hashes = ContributionHashes::new(&worker, &task, &digest(1));
    let try_with = |w: &mut World, authorization: Signature| {
        let call = ContributeCall {
            worker,
            task_id: task,
            result_hash: hashes.result_hash,
            result_seal: hashes.result_seal,
            enclave_challenge: Address::ZERO,
            enclave_signature: &poco::NON_TEE_ENCLAVE_SIGNATURE,
            authorization: &authorization,
        };
        w.ledger.contribute(&call, T0 + 1)
    };
    let by_stranger = signer(99)
        .sign_personal(poco::authorization_hash(&worker, &task, &Address::ZERO).as_bytes());
    let for_other_worker = w.scheduler.sign_personal(
        poco::authorization_hash(&w.workers[1].address(), &task, &Address::ZERO).as_bytes(),
    );
    for bad in [by_stranger, for_other_worker, Signature::ZERO] {
        assert!(matches!(
            try_with(&mut w, bad),
            Err(LedgerError::Unauthorized { .. })
        ));
    }
    // A worker without funds for the stake is refused too.
    let poor = signer(50);
    let authorization = w
        .scheduler
        .sign_personal(poco::authorization_hash(&poor.address(), &task, &Address::ZERO).as_bytes());
    let poor_hashes = ContributionHashes::new(&poor.address(), &task, &digest(1));
    let call = ContributeCall {
        worker: poor.address(),
        task_id: task,
        result_hash: poor_hashes.result_hash,
        result_seal: poor_hashes.result_seal,
        enclave_challenge: Address::ZERO,
        enclave_signature: &[],
        authorization: &authorization,
    };
    assert!(matches!(
        w.ledger.contribute(&call, T0 + 1),
        Err(LedgerError::InsufficientBalance {
            needed: STAKE,
            available: 0,
            ..
        })
    ));
    let unknown = TaskId(Bytes32([5; 32]));
    assert!(matches!(
        contribute(&mut w, 0, unknown, digest(1), T0),
        Err(LedgerError::UnknownTask(_))
    ));
}

fn tee_call<'a>(
    worker: Address,
    task: TaskId,
    hashes: &ContributionHashes,
    enclave_challenge: Address,
    enclave_signature: &'a [u8],
    authorization: &'a Signature,
) -> ContributeCall<'a> {
    ContributeCall {
        worker,
        task_id: task,
        result_hash: hashes.result_hash,
        result_seal: hashes.result_seal,
        enclave_challenge,
        enclave_signature,
        authorization,
    }
}

#[test]
fn tee_tasks_need_a_challenge_and_an_enclave_signature_by_it() {
    let mut w = world();
    let mut o = orders(&w, 1);
    o.app.tag = Tag::TEE;
    o.request.tag = Tag::TEE;
    let deal = match_deal(&mut w, &o, T0).unwrap();
    assert!(deal.summary.tag.is_tee());
    let task = w.ledger.initialize(&deal.deal_id, 0).unwrap();
    let worker = w.workers[0].address();
    let enclave = signer(77);
    let challenge = enclave.address();
    let hashes = ContributionHashes::new(&worker, &task, &digest(1));
    let good_enclave_sig = hashes.enclave_signature(&enclave);
    let bad_enclave_sig = hashes.enclave_signature(&signer(78));
    let authorize = |challenge: Address| {
        w.scheduler
            .sign_personal(poco::authorization_hash(&worker, &task, &challenge).as_bytes())
    };
    let (auth_zero, auth_challenge) = (authorize(Address::ZERO), authorize(challenge));
    let call = |challenge, sig, auth| tee_call(worker, task, &hashes, challenge, sig, auth);
    let zero_sig = &poco::NON_TEE_ENCLAVE_SIGNATURE[..];
    assert!(matches!(
        w.ledger
            .contribute(&call(Address::ZERO, zero_sig, &auth_zero), T0 + 1),
        Err(LedgerError::EnclaveChallengeRequired)
    ));
    // An authorization for the zero challenge does not cover the real one.
    assert!(matches!(
        w.ledger.contribute(
            &call(challenge, good_enclave_sig.as_bytes(), &auth_zero),
            T0 + 1
        ),
        Err(LedgerError::Unauthorized { .. })
    ));
    for bad in [&bad_enclave_sig.as_bytes()[..], zero_sig, &[0u8; 65][..]] {
        assert!(matches!(
            w.ledger
                .contribute(&call(challenge, bad, &auth_challenge), T0 + 1),
            Err(LedgerError::BadEnclaveSignature { .. })
        ));
    }
    let outcome = w
        .ledger
        .contribute(
            &call(challenge, good_enclave_sig.as_bytes(), &auth_challenge),
            T0 + 1,
        )
        .unwrap();
    assert!(outcome.consensus.is_some());
    assert_eq!(
        w.ledger.task(&task).unwrap().contributions[0].enclave_challenge,
        challenge
    );
}

#[test]
fn the_contribution_message_and_authorization_make_a_valid_call() {
    let mut w = world();
    let (_, task) = active_task(&mut w, 1);
    let worker = w.workers[0].address();
    let message = edgepool_protocol::messages::Contribution::standard(worker, task, digest(1), 42);
    let authorization =
        poco::WorkerpoolAuthorization::sign(&w.scheduler, worker, task, Address::ZERO);
    let call = ContributeCall::from_message(worker, &message, &authorization);
    assert!(w
        .ledger
        .contribute(&call, T0 + 1)
        .unwrap()
        .consensus
        .is_some());
}

#[test]
fn deadlines_follow_the_category_timeref_and_refuse_late_calls() {
    let mut w = world();
    let (deal, task) = active_task(&mut w, 3);
    let t = w.ledger.task(&task).unwrap();
    assert_eq!(t.contribution_deadline_ms, T0 + 7 * TIMEREF_MS);
    assert_eq!(t.final_deadline_ms, T0 + 10 * TIMEREF_MS);
    assert!(matches!(
        contribute(&mut w, 0, task, digest(1), T0 + 7 * TIMEREF_MS),
        Err(LedgerError::DeadlinePassed {
            deadline: "contribution",
            ..
        })
    ));
    contribute(&mut w, 0, task, digest(1), T0 + 7 * TIMEREF_MS - 1).unwrap();
    let reached = contribute(&mut w, 1, task, digest(1), T0 + 7 * TIMEREF_MS - 1).unwrap();
    assert_eq!(reached.reveal_deadline_ms, Some(T0 + 9 * TIMEREF_MS - 1));
    reveal(&mut w, 0, task, digest(1), T0 + 9 * TIMEREF_MS - 2).unwrap();
    assert!(matches!(
        w.ledger.finalize(&task, b"", T0 + 10 * TIMEREF_MS),
        Err(LedgerError::DeadlinePassed {
            deadline: "final",
            ..
        })
    ));
    // Task indexes outside the deal, and twice the same task.
    assert!(matches!(
        w.ledger.initialize(&deal, 2),
        Err(LedgerError::TaskIndexOutOfRange {
            index: 2,
            first: 0,
            size: 2
        })
    ));
    assert!(matches!(
        w.ledger.initialize(&deal, 0),
        Err(LedgerError::AlreadyInitialized(_))
    ));
    assert!(matches!(
        w.ledger.initialize(&DealId(Bytes32([9; 32])), 0),
        Err(LedgerError::UnknownDeal(_))
    ));
}

#[test]
fn withdrawals_take_only_free_money() {
    let mut w = world();
    let (_, _task) = active_task(&mut w, 1);
    let free = w.ledger.account(&w.requester).balance;
    assert!(matches!(
        w.ledger.withdraw(w.requester, free + 1),
        Err(LedgerError::InsufficientBalance { .. })
    ));
    w.ledger.withdraw(w.requester, free).unwrap();
    assert_eq!(w.ledger.account(&w.requester).balance, 0);
    assert!(matches!(
        w.ledger.deposit(w.requester, u64::MAX),
        Err(LedgerError::Overflow(_))
    ));
    assert_conserved(&w.ledger);
}
