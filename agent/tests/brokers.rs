//! Tests of the MQTT test harness itself against both real brokers: the embedded rumqttd and a
//! Mosquitto 2 child process (plain, TLS with passwords, TLS with client certificates, restarts
//! with persistence). They also record the errors rumqttc reports for refused connections.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use rumqttc::{ConnectReturnCode, ConnectionError, QoS};
use support::certs::TestCerts;
use support::client::{publish_once, ClientOptions, TestClient};
use support::mosquitto::{Mosquitto, MosquittoOptions, MosquittoTls};
use support::rumqttd::EmbeddedBroker;
use support::subscriber::Subscriber;
use support::WAIT;

/// How long a test waits to be sure that nothing more arrives.
const QUIET: Duration = Duration::from_millis(300);

fn retained_message_reaches_a_late_subscriber(url: &str) {
    publish_once(
        url,
        &ClientOptions::new("pub"),
        "edgepool/test/retained",
        b"hello",
        QoS::AtLeastOnce,
        true,
    );
    let sub = Subscriber::start(url, "edgepool/test/#", ClientOptions::new("sub"));
    let msg = sub
        .wait_for_topic("edgepool/test/retained", WAIT)
        .expect("retained message delivered to a late subscriber");
    assert_eq!(msg.payload, b"hello");
    assert!(
        msg.retain,
        "a message delivered on subscribe carries the retain flag"
    );
    assert_eq!(msg.qos, QoS::AtLeastOnce);
}

fn last_will_fires_when_a_connection_is_dropped(url: &str) {
    let sub = Subscriber::start(url, "edgepool/will/#", ClientOptions::new("sub"));
    let opts = ClientOptions::new("dying").last_will(
        "edgepool/will/dying",
        b"offline",
        QoS::AtLeastOnce,
        false,
    );
    let client = TestClient::connect(url, &opts).expect("will client connects");
    client.abort();
    let will = sub
        .wait_for_topic("edgepool/will/dying", WAIT)
        .expect("last will delivered after the connection was dropped");
    assert_eq!(will.payload, b"offline");
    assert!(!will.retain);
}

#[test]
fn rumqttd_delivers_a_retained_qos1_message_to_a_late_subscriber() {
    let broker = EmbeddedBroker::start();
    eprintln!("rumqttd started in {:?}", broker.started_in());
    retained_message_reaches_a_late_subscriber(&broker.url());
}

#[test]
fn mosquitto_delivers_a_retained_qos1_message_to_a_late_subscriber() {
    let broker = Mosquitto::start(MosquittoOptions::default());
    eprintln!("mosquitto started in {:?}", broker.started_in());
    retained_message_reaches_a_late_subscriber(&broker.url());
}

#[test]
fn rumqttd_publishes_the_last_will_of_a_client_that_drops_its_connection() {
    let broker = EmbeddedBroker::start();
    last_will_fires_when_a_connection_is_dropped(&broker.url());
}

#[test]
fn mosquitto_publishes_the_last_will_of_a_client_that_drops_its_connection() {
    let broker = Mosquitto::start(MosquittoOptions::default());
    last_will_fires_when_a_connection_is_dropped(&broker.url());
}

#[test]
fn mosquitto_does_not_publish_the_last_will_after_a_clean_disconnect() {
    let broker = Mosquitto::start(MosquittoOptions::default());
    let sub = Subscriber::start(&broker.url(), "edgepool/will/#", ClientOptions::new("sub"));
    let opts = ClientOptions::new("leaving").last_will(
        "edgepool/will/x",
        b"gone",
        QoS::AtLeastOnce,
        false,
    );
    TestClient::connect(&broker.url(), &opts)
        .unwrap()
        .disconnect();
    // A marker published after the disconnect: once it is seen, the will would have been too.
    publish_once(
        &broker.url(),
        &ClientOptions::new("pub"),
        "edgepool/will/marker",
        b"m",
        QoS::AtLeastOnce,
        false,
    );
    sub.wait_for_topic("edgepool/will/marker", WAIT)
        .expect("marker delivered");
    assert_eq!(sub.drain(), vec![], "no last will after DISCONNECT");
}

fn tls_password_broker(certs: &TestCerts) -> Mosquitto {
    Mosquitto::start(MosquittoOptions {
        users: vec![("worker".to_owned(), "s3cret".to_owned())],
        tls: Some(MosquittoTls {
            ca: certs.ca.clone(),
            cert: certs.server_cert.clone(),
            key: certs.server_key.clone(),
            require_certificate: false,
        }),
        persistence: false,
        port: None,
    })
}

#[test]
fn mosquitto_over_tls_accepts_the_right_password() {
    let certs = TestCerts::generate();
    let broker = tls_password_broker(&certs);
    assert!(broker.url().starts_with("mqtts://localhost:"));
    let opts = ClientOptions::new("worker")
        .ca(&certs.ca)
        .credentials("worker", "s3cret");
    let sub = Subscriber::start(&broker.url(), "edgepool/tls", opts.clone());
    publish_once(
        &broker.url(),
        &ClientOptions::new("pub")
            .ca(&certs.ca)
            .credentials("worker", "s3cret"),
        "edgepool/tls",
        b"x",
        QoS::AtLeastOnce,
        false,
    );
    assert!(
        sub.wait_for_topic("edgepool/tls", WAIT).is_some(),
        "log:\n{}",
        broker.log()
    );
}

#[test]
fn mosquitto_over_tls_refuses_a_wrong_password() {
    let certs = TestCerts::generate();
    let broker = tls_password_broker(&certs);
    let opts = ClientOptions::new("worker")
        .ca(&certs.ca)
        .credentials("worker", "wrong");
    let err = TestClient::connect(&broker.url(), &opts)
        .err()
        .expect("wrong password refused");
    eprintln!("wrong password: {err:?} / {err}");
    assert!(
        matches!(
            err,
            ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
        ),
        "found {err:?}"
    );
}

#[test]
fn mosquitto_over_tls_refuses_a_client_without_credentials() {
    let certs = TestCerts::generate();
    let broker = tls_password_broker(&certs);
    let err = TestClient::connect(&broker.url(), &ClientOptions::new("anon").ca(&certs.ca))
        .err()
        .expect("anonymous client refused");
    eprintln!("no credentials: {err:?} / {err}");
    assert!(
        matches!(
            err,
            ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized)
        ),
        "found {err:?}"
    );
}

#[test]
fn a_client_that_does_not_trust_the_broker_ca_fails_the_tls_handshake() {
    let certs = TestCerts::generate();
    let broker = tls_password_broker(&certs);
    let opts = ClientOptions::new("worker")
        .ca(&certs.other_ca)
        .credentials("worker", "s3cret");
    let err = TestClient::connect(&broker.url(), &opts)
        .err()
        .expect("unknown CA refused");
    eprintln!("unknown server CA: {err:?} / {err}");
    assert!(matches!(err, ConnectionError::Tls(_)), "found {err:?}");
}

#[test]
fn connecting_to_a_stopped_broker_fails_with_connection_refused() {
    let mut broker = Mosquitto::start(MosquittoOptions::default());
    let url = broker.url();
    broker.stop();
    let err = TestClient::connect(&url, &ClientOptions::new("late"))
        .err()
        .expect("broker down");
    eprintln!("broker down: {err:?} / {err}");
    assert!(
        matches!(&err, ConnectionError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "found {err:?}"
    );
}

fn tls_certificate_broker(certs: &TestCerts) -> Mosquitto {
    Mosquitto::start(MosquittoOptions {
        users: vec![],
        tls: Some(MosquittoTls {
            ca: certs.ca.clone(),
            cert: certs.server_cert.clone(),
            key: certs.server_key.clone(),
            require_certificate: true,
        }),
        persistence: false,
        port: None,
    })
}

#[test]
fn mosquitto_accepts_a_client_certificate_signed_by_its_ca() {
    let certs = TestCerts::generate();
    let broker = tls_certificate_broker(&certs);
    let opts = ClientOptions::new("worker")
        .ca(&certs.ca)
        .client_cert(&certs.client_cert, &certs.client_key);
    let sub = Subscriber::start(&broker.url(), "edgepool/cert", opts.clone());
    publish_once(
        &broker.url(),
        &ClientOptions {
            client_id: "pub".into(),
            ..opts
        },
        "edgepool/cert",
        b"c",
        QoS::AtLeastOnce,
        false,
    );
    assert!(
        sub.wait_for_topic("edgepool/cert", WAIT).is_some(),
        "log:\n{}",
        broker.log()
    );
    assert!(
        broker.log().contains("u'worker'"),
        "CN used as username; log:\n{}",
        broker.log()
    );
}

#[test]
fn mosquitto_refuses_a_client_certificate_from_an_unrelated_ca() {
    let certs = TestCerts::generate();
    let broker = tls_certificate_broker(&certs);
    let opts = ClientOptions::new("rogue")
        .ca(&certs.ca)
        .client_cert(&certs.other_client_cert, &certs.other_client_key);
    let err = TestClient::connect(&broker.url(), &opts)
        .err()
        .expect("rogue certificate refused");
    eprintln!("client certificate from an unrelated CA: {err:?} / {err}");
    // With TLS 1.3 the client finishes its handshake first; the broker's alert arrives when
    // rumqttc reads the CONNACK.
    assert!(
        format!("{err:?}").contains("AlertReceived(UnknownCA)"),
        "found {err:?}"
    );
}

#[test]
fn mosquitto_refuses_a_client_without_a_certificate_when_one_is_required() {
    let certs = TestCerts::generate();
    let broker = tls_certificate_broker(&certs);
    let err = TestClient::connect(&broker.url(), &ClientOptions::new("nocert").ca(&certs.ca))
        .err()
        .expect("client without certificate refused");
    eprintln!("no client certificate: {err:?} / {err}");
    assert!(
        format!("{err:?}").contains("AlertReceived(CertificateRequired)"),
        "found {err:?}"
    );
}

#[test]
fn mosquitto_restart_keeps_retained_messages_and_queued_messages_of_a_persistent_session() {
    let mut broker = Mosquitto::start(MosquittoOptions {
        persistence: true,
        ..Default::default()
    });
    let url = broker.url();
    let session = ClientOptions::new("worker").persistent("worker-persistent");
    // Create the session and its subscription, then go offline.
    Subscriber::start(&url, "edgepool/queue/#", session.clone()).disconnect();
    let publisher = ClientOptions::new("pub");
    publish_once(
        &url,
        &publisher,
        "edgepool/retained",
        b"kept",
        QoS::AtLeastOnce,
        true,
    );
    for i in 0..3u8 {
        publish_once(
            &url,
            &publisher,
            "edgepool/queue/a",
            &[i],
            QoS::AtLeastOnce,
            false,
        );
    }

    broker.restart();
    eprintln!("mosquitto restarted in {:?}", broker.started_in());
    assert_eq!(broker.url(), url, "same port after restart");

    let late = Subscriber::start(&url, "edgepool/retained", ClientOptions::new("late"));
    let retained = late
        .wait_for_topic("edgepool/retained", WAIT)
        .expect("retained message kept");
    assert_eq!(retained.payload, b"kept");

    let resumed = Subscriber::start(&url, "edgepool/queue/#", session);
    for i in 0..3u8 {
        let msg = resumed
            .wait_for_topic("edgepool/queue/a", WAIT)
            .unwrap_or_else(|| {
                panic!(
                    "queued message {i} delivered after restart; log:\n{}",
                    broker.log()
                )
            });
        assert_eq!(msg.payload, vec![i], "queued messages in order");
    }
}

#[test]
fn a_subscriber_reconnects_and_resumes_its_session_after_a_mosquitto_restart() {
    let mut broker = Mosquitto::start(MosquittoOptions {
        persistence: true,
        ..Default::default()
    });
    let url = broker.url();
    let sub = Subscriber::start(
        &url,
        "edgepool/live/#",
        ClientOptions::new("w").persistent("worker-live"),
    );
    assert_eq!(sub.connections(), 1);
    broker.restart();
    assert!(
        sub.wait_ready(2, WAIT),
        "subscriber back; last error: {:?}",
        sub.last_error()
    );
    eprintln!(
        "subscriber error while the broker was down: {:?}",
        sub.last_error()
    );
    publish_once(
        &url,
        &ClientOptions::new("pub"),
        "edgepool/live/x",
        b"after",
        QoS::AtLeastOnce,
        false,
    );
    let msg = sub
        .wait_for_topic("edgepool/live/x", WAIT)
        .expect("delivered after reconnection");
    assert_eq!(msg.payload, b"after");
    assert!(sub.wait_for(|_| true, QUIET).is_none(), "nothing else");
}

#[test]
fn a_clean_session_subscriber_subscribes_again_after_a_mosquitto_restart() {
    let mut broker = Mosquitto::start(MosquittoOptions::default());
    let url = broker.url();
    let sub = Subscriber::start(&url, "edgepool/clean/#", ClientOptions::new("clean"));
    broker.kill();
    broker.restart();
    assert!(
        sub.wait_ready(2, WAIT),
        "subscribed again; last error: {:?}",
        sub.last_error()
    );
    publish_once(
        &url,
        &ClientOptions::new("pub"),
        "edgepool/clean/x",
        b"1",
        QoS::AtLeastOnce,
        false,
    );
    assert!(sub.wait_for_topic("edgepool/clean/x", WAIT).is_some());
}

#[test]
#[should_panic(expected = "mosquitto not installed: apt-get install -y mosquitto")]
fn a_missing_mosquitto_binary_fails_the_test_with_an_install_hint() {
    support::mosquitto::require_installed(Path::new("/nonexistent/sbin/mosquitto"));
}

#[test]
fn a_subscriber_disconnects_promptly_from_both_brokers() {
    let rumqttd = EmbeddedBroker::start();
    let mosquitto = Mosquitto::start(MosquittoOptions::default());
    for url in [rumqttd.url(), mosquitto.url()] {
        let sub = Subscriber::start(&url, "edgepool/#", ClientOptions::new("quick"));
        let started = Instant::now();
        sub.disconnect();
        eprintln!("{url}: subscriber disconnected in {:?}", started.elapsed());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{url}: slow disconnect"
        );
    }
}
