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
