//! The bench path end to end: light agents on real MQTT connections against the real pool,
//! store and embedded broker; every task must complete and nothing may be refused.

use edgepool_simulator::bench::{self, BenchOptions};

#[test]
fn twenty_light_agents_complete_a_hundred_tasks_with_nothing_lost() {
    let options = BenchOptions {
        agents: 20,
        tasks: 100,
        deal_size: 40,
        timeout_secs: 60,
        ..BenchOptions::default()
    };
    let report = bench::run(&options).expect("the bench sets up");
    assert!(report.nothing_lost(), "{}", report.table());
    assert_eq!(report.completed, 100);
    assert_eq!(report.assign_to_final_ms.count, 100);
    assert_eq!(report.assign_to_contribution_ms.count, 100);
    assert_eq!(report.pool_refused, 0, "{}", report.table());
    assert_eq!(report.agents_refused, 0);
    assert_eq!(report.agents_publish_errors, 0);
    assert_eq!(report.agents_upload_errors, 0);
    assert!(report.tasks_per_sec > 0.0);
}

#[test]
fn trust_three_needs_three_agreeing_agents_per_task() {
    let options = BenchOptions {
        agents: 6,
        tasks: 30,
        trust: 3,
        timeout_secs: 60,
        ..BenchOptions::default()
    };
    let report = bench::run(&options).expect("the bench sets up");
    assert!(report.nothing_lost(), "{}", report.table());
    // Three contributions per task reached the pool.
    assert_eq!(
        report.assign_to_contribution_ms.count,
        90,
        "{}",
        report.table()
    );
}

#[test]
fn more_trust_than_agents_is_refused_before_anything_starts() {
    let options = BenchOptions {
        agents: 2,
        trust: 3,
        ..BenchOptions::default()
    };
    assert!(matches!(
        bench::run(&options),
        Err(bench::BenchError::Options(_))
    ));
}
