//! Order matching and the registries.

use super::*;

#[test]
fn matching_makes_a_deal_locks_the_escrow_and_consumes_volume() {
    let mut w = world();
    let o = orders(&w, 3);
    let deal = match_deal(&mut w, &o, T0).unwrap();
    let expected_id =
        keccak256_concat(&[o.request.hash().as_bytes(), Bytes32::from_u64(0).as_bytes()]);
    assert_eq!(deal.deal_id, DealId(expected_id));
    assert_eq!(deal.volume, 2);
    let s = &deal.summary;
    assert_eq!(
        (s.bot_first, s.bot_size, s.trust, s.category),
        (0, 2, 3, w.category)
    );
    assert_eq!(s.time_ref_seconds, 100);
    assert_eq!(s.start_time_ms, T0);
    assert_eq!(s.app.address, w.app);
    assert_eq!(s.dataset.as_ref().unwrap().filename, "data.csv");
    assert_eq!(s.args, "--rows 3");
    assert_eq!(w.ledger.deal_summary(&deal.deal_id), Some(s));
    // Requester: 2 tasks × (10 + 20 + 1000); scheduler: 2 × 30% of 1000.
    let requester = w.ledger.account(&w.requester);
    assert_eq!(
        (requester.balance, requester.frozen),
        (REQUESTER_FUNDS - 2_060, 2_060)
    );
    let scheduler = w.ledger.account(&w.scheduler.address());
    assert_eq!(scheduler.frozen, 600);
    assert_eq!(w.ledger.consumed(&o.request.hash()), 2);
    assert_eq!(w.ledger.consumed(&o.app.hash()), 2);
    // The request is used up; a new salt is a new request, continuing nothing.
    assert!(matches!(
        match_deal(&mut w, &o, T0),
        Err(LedgerError::Match(MatchError::VolumeExhausted {
            order: "request"
        }))
    ));
    let mut o2 = orders(&w, 3);
    o2.request.salt = Bytes32([1; 32]);
    o2.request.volume = 500;
    let second = match_deal(&mut w, &o2, T0).unwrap();
    // The app order had 100, 2 consumed: the deal is limited to 98.
    assert_eq!(second.volume, 98);
    assert_ne!(second.deal_id, deal.deal_id);
    assert_conserved(&w.ledger);
}

#[test]
fn a_trust_of_zero_is_stored_as_one() {
    let mut w = world();
    let o = orders(&w, 0);
    assert_eq!(match_deal(&mut w, &o, T0).unwrap().summary.trust, 1);
}

#[test]
fn matching_refuses_every_broken_rule_and_changes_nothing() {
    type Mutation = fn(&World, &mut Orders);
    type Check = fn(&MatchError) -> bool;
    let stranger = signer(99).address();
    let cases: &[(&str, Mutation, Check)] = &[
        (
            "category",
            |_, o| o.request.category = 7,
            |e| matches!(e, MatchError::CategoryMismatch { .. }),
        ),
        (
            "unknown category",
            |_, o| {
                o.request.category = 7;
                o.pool.category = 7;
            },
            |e| matches!(e, MatchError::UnknownCategory(7)),
        ),
        (
            "trust",
            |_, o| o.request.trust = 6,
            |e| {
                matches!(
                    e,
                    MatchError::TrustTooHigh {
                        requested: 6,
                        offered: 5
                    }
                )
            },
        ),
        (
            "app price",
            |_, o| o.app.price = 11,
            |e| matches!(e, MatchError::PriceTooHigh { what: "app", .. }),
        ),
        (
            "dataset price",
            |_, o| o.dataset.price = 21,
            |e| {
                matches!(
                    e,
                    MatchError::PriceTooHigh {
                        what: "dataset",
                        ..
                    }
                )
            },
        ),
        (
            "pool price",
            |_, o| o.pool.price = 1_001,
            |e| {
                matches!(
                    e,
                    MatchError::PriceTooHigh {
                        what: "workerpool",
                        ..
                    }
                )
            },
        ),
        (
            "tag",
            |_, o| o.request.tag = Tag::TDX,
            |e| matches!(e, MatchError::TagNotOffered { .. }),
        ),
        (
            "tag from dataset",
            |_, o| o.dataset.tag = Tag::SCONE,
            |e| matches!(e, MatchError::TagNotOffered { .. }),
        ),
        (
            "tee without app",
            |_, o| o.request.tag = Tag::TEE,
            |e| matches!(e, MatchError::TeeAppOrderMissing),
        ),
        (
            "app",
            |_, o| o.request.app = Address([7; 20]),
            |e| matches!(e, MatchError::WrongApp { .. }),
        ),
        (
            "dataset",
            |_, o| o.request.dataset = Address([7; 20]),
            |e| matches!(e, MatchError::WrongDataset { .. }),
        ),
        (
            "no dataset requested",
            |_, o| o.request.dataset = Address::ZERO,
            |e| matches!(e, MatchError::WrongDataset { .. }),
        ),
        (
            "request pool",
            |_, o| o.request.workerpool = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "request",
                        field: "workerpool",
                        ..
                    }
                )
            },
        ),
        (
            "app requester",
            |_, o| o.app.requester_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "app",
                        field: "requester",
                        ..
                    }
                )
            },
        ),
        (
            "app dataset",
            |_, o| o.app.dataset_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "app",
                        field: "dataset",
                        ..
                    }
                )
            },
        ),
        (
            "app pool",
            |_, o| o.app.workerpool_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "app",
                        field: "workerpool",
                        ..
                    }
                )
            },
        ),
        (
            "dataset app",
            |_, o| o.dataset.app_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "dataset",
                        field: "app",
                        ..
                    }
                )
            },
        ),
        (
            "dataset pool",
            |_, o| o.dataset.workerpool_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "dataset",
                        field: "workerpool",
                        ..
                    }
                )
            },
        ),
        (
            "dataset requester",
            |_, o| o.dataset.requester_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "dataset",
                        field: "requester",
                        ..
                    }
                )
            },
        ),
        (
            "pool app",
            |_, o| o.pool.app_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "workerpool",
                        field: "app",
                        ..
                    }
                )
            },
        ),
        (
            "pool dataset",
            |_, o| o.pool.dataset_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "workerpool",
                        field: "dataset",
                        ..
                    }
                )
            },
        ),
        (
            "pool requester",
            |_, o| o.pool.requester_restrict = Address([7; 20]),
            |e| {
                matches!(
                    e,
                    MatchError::Restricted {
                        order: "workerpool",
                        field: "requester",
                        ..
                    }
                )
            },
        ),
        (
            "app volume",
            |_, o| o.app.volume = 0,
            |e| matches!(e, MatchError::VolumeExhausted { order: "app" }),
        ),
        (
            "dataset volume",
            |_, o| o.dataset.volume = 0,
            |e| matches!(e, MatchError::VolumeExhausted { order: "dataset" }),
        ),
        (
            "pool volume",
            |_, o| o.pool.volume = 0,
            |e| {
                matches!(
                    e,
                    MatchError::VolumeExhausted {
                        order: "workerpool"
                    }
                )
            },
        ),
    ];
    for &(name, mutate, expected) in cases {
        let mut w = world();
        let before = w.ledger.state.clone();
        let mut o = orders(&w, 3);
        mutate(&w, &mut o);
        match match_deal(&mut w, &o, T0) {
            Err(LedgerError::Match(error)) => assert!(expected(&error), "{name}: {error}"),
            other => panic!("{name}: expected a match error, got {other:?}"),
        }
        assert_eq!(w.ledger.state, before, "{name} changed the ledger");
    }

    // Registries and balances.
    let mut w = world();
    let mut o = orders(&w, 3);
    o.app.app = stranger;
    o.request.app = stranger;
    o.dataset.app_restrict = Address::ZERO;
    assert!(matches!(match_deal(&mut w, &o, T0), Err(LedgerError::UnknownApp(a)) if a == stranger));
    let mut o = orders(&w, 3);
    o.pool.workerpool = stranger;
    assert!(matches!(
        match_deal(&mut w, &o, T0),
        Err(LedgerError::UnknownWorkerpool(_))
    ));
    let mut o = orders(&w, 3);
    o.request.volume = 100;
    o.request.requester = stranger;
    o.request.beneficiary = stranger;
    assert!(matches!(
        match_deal(&mut w, &o, T0),
        Err(LedgerError::InsufficientBalance { account, needed: 103_000, available: 0 }) if account == stranger
    ));
    // A request without dataset matches without a dataset order.
    let mut o = orders(&w, 3);
    o.request.dataset = Address::ZERO;
    let deal = w
        .ledger
        .match_orders(&o.app, None, &o.pool, &o.request, T0)
        .unwrap();
    assert!(deal.summary.dataset.is_none());
    assert_eq!(w.ledger.deal(&deal.deal_id).unwrap().task_price, 1_010);
}

#[test]
fn registries_refuse_duplicates_and_bad_arguments() {
    let mut w = world();
    let owner = w.app_owner;
    assert!(matches!(
        w.ledger.register_app(owner, "hello", "http://127.0.0.1/hello.wasm", digest(0xaa), Some(1)),
        Err(LedgerError::AlreadyRegistered(a)) if a == w.app
    ));
    assert!(matches!(
        w.ledger.register_app(owner, "x", "", digest(1), None),
        Err(LedgerError::InvalidArgument { field: "url", .. })
    ));
    assert!(matches!(
        w.ledger
            .register_dataset(owner, "../x", "http://x", digest(1), None),
        Err(LedgerError::InvalidArgument { .. })
    ));
    assert!(matches!(
        w.ledger.register_workerpool(owner, "p", 101, 0),
        Err(LedgerError::InvalidArgument {
            field: "worker_stake_ratio",
            ..
        })
    ));
    assert!(matches!(
        w.ledger.create_category("zero", 0),
        Err(LedgerError::InvalidArgument { .. })
    ));
    let mut fresh = Ledger::in_memory().unwrap();
    fresh.create_default_categories().unwrap();
    fresh.create_default_categories().unwrap();
    assert_eq!(fresh.category(4).unwrap().time_ref_seconds, 36_000);
    assert!(fresh.category(5).is_none());
}

#[test]
fn the_open_order_constructors_match_and_lock_the_order_prices() {
    let mut w = world();
    let app = AppOrder::open(w.app, 5, 10);
    let dataset = DatasetOrder::open(w.dataset, 7, 10);
    let pool = WorkerpoolOrder::open(w.pool, 100, 10, w.category, 1, Tag::NONE);
    let mut request = RequestOrder::new(w.requester, w.app, w.dataset, w.category, 1, 3);
    request.tag = Tag::TEE;
    // A tee request needs the pool and the app to carry the tag.
    assert!(matches!(
        w.ledger
            .match_orders(&app, Some(&dataset), &pool, &request, T0),
        Err(LedgerError::Match(MatchError::TagNotOffered { .. }))
    ));
    request.tag = Tag::NONE;
    let deal = w
        .ledger
        .match_orders(&app, Some(&dataset), &pool, &request, T0)
        .unwrap();
    assert_eq!((deal.volume, deal.summary.beneficiary), (3, w.requester));
    assert_eq!(w.ledger.account(&w.requester).frozen, 3 * 112);
}
