//! TEE tasks end to end: a real agent with the software attester, the embedded broker, a loopback
//! HTTP server (app, encrypted dataset, result store), and the simulator's scheduler with its SMS
//! (under the simulator's policy, which accepts software evidence) relaying the secret exchange.
//!
//! A TEE task with an encrypted dataset completes with an enclave signature that recovers to the
//! SMS's challenge, and afterwards neither the dataset key nor a plaintext row is anywhere in the
//! agent's state directory (journal and WAL included) or its log. Refusals (a wrong app checksum,
//! a dataset order restricted to another app, evidence replayed from another task, software
//! evidence under the hardware-only policy) are each reported with their typed cause, and no
//! contribution is made.
//!
//! Result encryption: a TEE task whose deal encrypts its result keeps and uploads only the
//! archive encrypted for the beneficiary's key (the iExec SDK's own key pair from the shared
//! vectors), which decrypts with the protocol code to files whose digest is the contribution's;
//! the clear result is nowhere in the state directory or the log. Without a beneficiary key
//! (never pushed, or not released) the task fails with its typed cause and nothing is
//! contributed or uploaded; a standard deal with result encryption is declined.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use edgepool_attestation::policy::Policy;
use edgepool_protocol::dataset::{self, DatasetKey};
use edgepool_protocol::digest::result_digest;
use edgepool_protocol::messages::{DatasetRef, DealSummary, Evidence, Message};
use edgepool_protocol::poco;
use edgepool_protocol::primitives::{Address, Digest};
use edgepool_protocol::result_archive::{
    decrypt_result, unzip_to_tree, BeneficiaryPrivateKey, ExtractLimits, AES_KEY_ENTRY,
    PAYLOAD_ENTRY,
};
use edgepool_protocol::signature::Signer;
use edgepool_protocol::sms::{
    web2_secret_challenge, web3_secret_challenge, RESULT_ENCRYPTION_KEY_NAME,
};
use edgepool_protocol::status::{ReplicateStatus, ReplicateStatusCause};
use edgepool_protocol::tags::Tag;
use edgepool_simulator::scheduler::Action;
use edgepool_simulator::sms::DatasetRestrictions;
use support::driver::Driver;
use support::http::StoreServer as HttpServer;
use support::pool::Agent;
use support::repo;
use support::rumqttd::EmbeddedBroker;

const OWNER_KEY: [u8; 32] = [0x0d; 32];
/// A row no output of csv-stats repeats: if these bytes appear anywhere, plaintext leaked.
const MARKER: &str = "ZZ-PLAINTEXT-MARKER-7f3a9c";

/// `edgepool-agent run` with the software attester, for the embedded broker at `broker`.
fn start_agent(broker: &str, scheduler: Address) -> Agent {
    let env = [
        ("EDGEPOOL_AGENT_MIN_FREE_DISK_MB", "1"),
        ("EDGEPOOL_AGENT_SLOTS", "2"),
        ("EDGEPOOL_AGENT_ATTESTATION", "software"),
        ("EDGEPOOL_AGENT_SECRET_TIMEOUT_SECS", "20"),
        // The most verbose level: a secret that reached any log line would be found.
        ("EDGEPOOL_LOG", "trace"),
    ];
    Agent::start(broker, scheduler, &env)
}

/// The CSV and its encryption under a fresh key.
struct EncryptedDataset {
    key: DatasetKey,
    encrypted: Vec<u8>,
}

fn encrypted_dataset() -> EncryptedDataset {
    let csv = format!("city,temp\nParis,11.5\n{MARKER},12\nLyon,13\n");
    let key = DatasetKey::generate(&mut rand::thread_rng());
    let encrypted = dataset::encrypt(&key, [0x42; 16], csv.as_bytes());
    EncryptedDataset { key, encrypted }
}

/// The standard deal of csv-stats on the encrypted dataset, tagged `tee`.
fn tee_deal(server: &HttpServer, app: &[u8], data: &EncryptedDataset, seed: u8) -> DealSummary {
    let mut deal = server.deal("csv-stats.wasm", app, Vec::new(), "temp", seed);
    deal.dataset = Some(DatasetRef {
        address: Address([0xd1; 20]),
        url: server.url("weather.csv.enc"),
        checksum: dataset::checksum(&data.encrypted),
        filename: "weather.csv".into(),
        size_bytes: Some(data.encrypted.len() as u64),
        encrypted: true,
    });
    deal.tag = Tag::encode(&["tee"]).unwrap();
    deal
}

/// The owner pushes the dataset key to the SMS, signed over iExec's web3 secret challenge.
fn push_key(driver: &mut Driver, data: &EncryptedDataset) {
    let owner = Signer::from_bytes(&OWNER_KEY).unwrap();
    let value = data.key.to_base64();
    let dataset = Address([0xd1; 20]);
    let signature = owner.sign_personal(web3_secret_challenge(&dataset, &value).as_bytes());
    driver
        .scheduler
        .sms_mut()
        .unwrap()
        .secrets_mut()
        .push_dataset_secret(dataset, owner.address(), &value, &signature)
        .unwrap();
}

fn setup(
    policy: Policy,
) -> (
    HttpServer,
    EmbeddedBroker,
    Driver,
    Agent,
    Vec<u8>,
    EncryptedDataset,
) {
    let app = std::fs::read(repo().join("apps/csv-stats/csv-stats.wasm")).unwrap();
    let data = encrypted_dataset();
    let mut files = HashMap::new();
    files.insert("csv-stats.wasm".to_string(), app.clone());
    files.insert("weather.csv.enc".to_string(), data.encrypted.clone());
    files.insert("wrong.wasm".to_string(), b"\0asm\x01\0\0\0".to_vec());
    let server = HttpServer::start(files);
    let broker = EmbeddedBroker::start();
    let mut driver = Driver::connect_with_sms(broker.port(), policy);
    push_key(&mut driver, &data);
    let agent = start_agent(&broker.url(), driver.scheduler.address());
    (server, broker, driver, agent, app, data)
}

/// Every file under `dir`, recursively (bounded depth).
fn files_under(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    if depth > 16 {
        return;
    }
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, depth + 1, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_tee_task_with_an_encrypted_dataset_completes_and_leaves_no_secret_behind() {
    let (server, _broker, mut driver, agent, app, data) = setup(Policy::simulator());
    let capacity = driver.wait_online(&agent);
    // tee is advertised after the self-attestation, with the kind and the measurement.
    assert!(capacity.tags.is_tee(), "{capacity:?}");
    assert_eq!(
        capacity.tee,
        Some(edgepool_protocol::messages::TeeKind::Software)
    );
    assert_eq!(capacity.tee_measurement.len(), 32);

    let deal = tee_deal(&server, &app, &data, 1);
    let task_id = driver.assign(&deal, agent.address);
    let challenge = driver.scheduler.task(&task_id).unwrap().enclave_challenge;
    assert!(!challenge.is_zero());
    let mut link = None;
    driver.run_until(&agent, |_, actions| {
        actions.iter().any(|a| match a {
            Action::Finalized { result_link, .. } => {
                link = Some(result_link.clone());
                true
            }
            _ => false,
        })
    });

    // The contribution's enclave signature recovers to the SMS's challenge.
    let contribution = driver.contributions(task_id)[0].clone();
    assert_eq!(contribution.enclave_challenge, challenge);
    contribution.verify_hashes(agent.address).unwrap();
    let signature =
        edgepool_protocol::signature::Signature::from_slice(&contribution.enclave_signature)
            .unwrap();
    let message = poco::enclave_message_hash(&contribution.result_hash, &contribution.result_seal);
    assert_eq!(
        signature.recover_personal(message.as_bytes()).unwrap(),
        challenge
    );

    // The app saw the decrypted CSV: three rows of temperatures.
    let zip = &server
        .last_upload(&format!("/results/{task_id}"))
        .unwrap()
        .body;
    let tree = unzip_to_tree(zip, &ExtractLimits::default()).unwrap();
    assert_eq!(
        poco::result_hash(&task_id, &result_digest(&tree, "").unwrap()),
        contribution.result_hash
    );
    let stats = String::from_utf8(tree.read("stats.json").unwrap().to_vec()).unwrap();
    assert!(
        stats.contains("\"rows\": 3") || stats.contains("\"rows\":3"),
        "{stats}"
    );
    assert!(
        stats.contains("\"mean\": 12.1") || stats.contains("\"mean\":12.1"),
        "{stats}"
    );
    assert!(link.unwrap().ends_with(&format!("/results/{task_id}")));

    // Nothing secret is left anywhere: journal, WAL, cache, results, key files, the log. The
    // agent is killed first (as a crash would), so the WAL is left as it was and no file moves
    // during the search.
    let mut agent = agent;
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let key = data.key.as_bytes().to_vec();
    let key_b64 = data.key.to_base64().as_bytes().to_vec();
    let mut files = Vec::new();
    files_under(agent.dir.path(), 0, &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "log")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.to_string_lossy().ends_with("-wal")
            || f.to_string_lossy().ends_with(".sqlite")
            || f.to_string_lossy().ends_with(".db")),
        "no journal found among {files:?}"
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for (what, needle) in [
            ("the dataset key", key.as_slice()),
            ("the dataset key in base64", key_b64.as_slice()),
            ("a plaintext row", MARKER.as_bytes()),
        ] {
            assert!(
                !contains(&bytes, needle),
                "{what} found in {}",
                file.display()
            );
        }
    }
    // The search can find what it looks for: the ciphertext is in the cache.
    assert!(files
        .iter()
        .any(|f| contains(&std::fs::read(f).unwrap(), &data.encrypted[..64])));
}

/// The pool never got the TEE contribution (lost by a broker after its PUBACK) and sends the
/// assignment again: the agent answers with the same contribution, rebuilt from its journal,
/// enclave signature included, and the task completes.
#[test]
fn a_lost_tee_contribution_is_sent_again_when_the_assignment_is_repeated() {
    let (server, _broker, mut driver, agent, app, data) = setup(Policy::simulator());
    driver.wait_online(&agent);
    let sent = std::rc::Rc::new(std::cell::RefCell::new(None));
    let keep = std::rc::Rc::clone(&sent);
    driver.assignment_tamper = Some(Box::new(move |a| *keep.borrow_mut() = Some(a.clone())));
    driver.lose_contribution = true;
    let deal = tee_deal(&server, &app, &data, 7);
    let task_id = driver.assign(&deal, agent.address);
    driver.run_until(&agent, |m, _| matches!(m, Message::Contribution(_)));
    assert!(!driver.lose_contribution);
    let assignment = sent.borrow().clone().expect("assignment sent");
    driver.send(agent.address, &Message::Assignment(assignment));
    driver.run_until_finalized(&agent, task_id);
    let contributions = driver.contributions(task_id);
    assert_eq!(contributions.len(), 2, "{contributions:?}");
    assert_eq!(contributions[0], contributions[1]);
    let c = contributions[1];
    let challenge = driver.scheduler.task(&task_id).unwrap().enclave_challenge;
    assert_eq!(c.enclave_challenge, challenge);
    assert_eq!(c.enclave_signature.len(), 65);
}

#[test]
fn refused_secret_requests_are_reported_with_their_typed_cause_and_never_contributed() {
    let (server, _broker, mut driver, agent, app, data) = setup(Policy::simulator());
    driver.wait_online(&agent);

    // A wrong app checksum: the served module is not the registered one, so the agent stops
    // before it ever asks for the secrets.
    let mut wrong_app = tee_deal(&server, &app, &data, 11);
    wrong_app.app.url = server.url("wrong.wasm");
    let task = driver.assign(&wrong_app, agent.address);
    let (status, cause) = driver.run_until_failed(&agent, task);
    assert_eq!(status, ReplicateStatus::AppDownloadFailed);
    assert_eq!(cause, ReplicateStatusCause::AppDownloadFailed);
    assert!(!driver
        .seen
        .iter()
        .any(|m| matches!(m, Message::SecretRequest(r) if r.task_id == task)));

    // A dataset order restricted to another app.
    let restricted = tee_deal(&server, &app, &data, 12);
    driver.scheduler.restrict_dataset(
        restricted.deal_id,
        DatasetRestrictions {
            app: Address([0xee; 20]),
            ..DatasetRestrictions::default()
        },
    );
    let task = driver.assign(&restricted, agent.address);
    assert_eq!(
        driver.run_until_failed(&agent, task),
        (
            ReplicateStatus::ComputeFailed,
            ReplicateStatusCause::GetDatasetSecretFailed
        )
    );
    assert!(!driver.contributed(task));

    // Evidence replayed from another task: a relay swaps in the evidence of the first request.
    let first: Evidence = driver
        .seen
        .iter()
        .find_map(|m| match m {
            Message::SecretRequest(r) => Some(r.evidence.clone()),
            _ => None,
        })
        .unwrap();
    driver.tamper = Some(Box::new(move |request| request.evidence = first.clone()));
    let replayed = tee_deal(&server, &app, &data, 13);
    let task = driver.assign(&replayed, agent.address);
    assert_eq!(
        driver.run_until_failed(&agent, task),
        (
            ReplicateStatus::ComputeFailed,
            ReplicateStatusCause::AttestationRefused
        )
    );
    assert!(!driver.contributed(task));
    driver.tamper = None;

    // Software evidence under the hardware-only default policy.
    driver
        .scheduler
        .sms_mut()
        .unwrap()
        .set_policy(Policy::default());
    let hardware_only = tee_deal(&server, &app, &data, 14);
    let task = driver.assign(&hardware_only, agent.address);
    assert_eq!(
        driver.run_until_failed(&agent, task),
        (
            ReplicateStatus::ComputeFailed,
            ReplicateStatusCause::AttestationRefused
        )
    );
    assert!(!driver.contributed(task));
    // The agent's log names the SMS's reasons.
    let log = agent.last_log();
    assert!(log.contains("dataset-restricted"), "{log}");
    assert!(log.contains("binding"), "{log}");
    assert!(log.contains("software evidence"), "{log}");
}

#[test]
fn a_standard_task_with_an_encrypted_dataset_is_declined() {
    let (server, _broker, mut driver, agent, app, data) = setup(Policy::simulator());
    driver.wait_online(&agent);
    let mut deal = tee_deal(&server, &app, &data, 21);
    deal.tag = Tag::NONE;
    let task = driver.assign(&deal, agent.address);
    let mut cause = None;
    driver.run_until(&agent, |m, _| match m {
        Message::Decline(d) if d.task_id == task => {
            cause = Some(d.cause);
            true
        }
        _ => false,
    });
    assert_eq!(cause, Some(ReplicateStatusCause::EncryptedDatasetNeedsTee));
}

#[test]
fn a_tee_task_killed_while_waiting_for_its_secrets_asks_again_and_ignores_the_stale_answer() {
    let (server, _broker, mut driver, mut agent, app, data) = setup(Policy::simulator());
    driver.wait_online(&agent);
    let deal = tee_deal(&server, &app, &data, 31);
    driver.hold = true;
    let task_id = driver.assign(&deal, agent.address);
    driver.run_until(&agent, |m, _| matches!(m, Message::SecretRequest(_)));
    // The agent dies while its request is in flight; the resumed task asks again with a new key.
    agent.restart(None);
    // The journaled request may be flushed again after the restart (same bytes, same key);
    // the resumed job's own request has a fresh key.
    let first = match &driver.held[0].1 {
        Message::SecretRequest(r) => r.ephemeral_public_key,
        _ => unreachable!(),
    };
    driver.run_until(
        &agent,
        |m, _| matches!(m, Message::SecretRequest(r) if r.ephemeral_public_key != first),
    );
    assert!(driver.held.len() >= 2, "{:?}", driver.held);
    // Both are answered, the stale one first: the agent must use the answer to its live request.
    driver.release_held();
    driver.run_until_finalized(&agent, task_id);
    let contribution = driver.contributions(task_id)[0].clone();
    assert_eq!(
        contribution.enclave_challenge,
        driver.scheduler.task(&task_id).unwrap().enclave_challenge
    );
    assert!(
        agent.last_log().contains("stale or duplicate"),
        "{}",
        agent.last_log()
    );
}

#[test]
fn corrupt_truncated_and_wrong_key_encrypted_datasets_fail_with_their_cause_and_leak_nothing() {
    let app = std::fs::read(repo().join("apps/csv-stats/csv-stats.wasm")).unwrap();
    let data = encrypted_dataset();
    // Served with one byte flipped: the on-chain checksum is the good file's.
    let mut corrupt = data.encrypted.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x01;
    // Published cut short by its owner, with the checksum of what was published: the download
    // verifies, the decryption cannot (not whole AES blocks).
    let truncated = data.encrypted[..data.encrypted.len() - 5].to_vec();
    // Published whole, but the key the owner pushed to the SMS is another one. Fixed keys: CBC
    // is not authenticated, and about one wrong key in 256 gives valid padding (and garbage),
    // which no agent can detect (RELIABILITY.md); these two are checked to give bad padding.
    let pushed = DatasetKey::from_bytes([0x33; 32]);
    let other = EncryptedDataset {
        encrypted: dataset::encrypt(
            &DatasetKey::from_bytes([0x44; 32]),
            [0x42; 16],
            format!("city,temp\n{MARKER},12\n").as_bytes(),
        ),
        key: DatasetKey::from_bytes([0x44; 32]),
    };
    assert!(dataset::decrypt(&pushed, &other.encrypted).is_err());
    let mut files = HashMap::new();
    files.insert("csv-stats.wasm".to_string(), app.clone());
    files.insert("weather.csv.enc".to_string(), corrupt);
    files.insert("truncated.enc".to_string(), truncated.clone());
    files.insert("other-key.enc".to_string(), other.encrypted.clone());
    let server = HttpServer::start(files);
    let _broker = EmbeddedBroker::start();
    let mut driver = Driver::connect_with_sms(_broker.port(), Policy::simulator());
    push_key(&mut driver, &data);
    let owner = Signer::from_bytes(&OWNER_KEY).unwrap();
    for (address, key) in [(0xd2, &data.key), (0xd3, &pushed)] {
        let value = key.to_base64();
        let dataset = Address([address; 20]);
        let signature = owner.sign_personal(web3_secret_challenge(&dataset, &value).as_bytes());
        driver
            .scheduler
            .sms_mut()
            .unwrap()
            .secrets_mut()
            .push_dataset_secret(dataset, owner.address(), &value, &signature)
            .unwrap();
    }
    let agent = start_agent(&_broker.url(), driver.scheduler.address());
    driver.wait_online(&agent);

    let with = |seed: u8, address: u8, url: &str, checksum: Digest| {
        let mut deal = tee_deal(&server, &app, &data, seed);
        let reference = deal.dataset.as_mut().unwrap();
        reference.address = Address([address; 20]);
        reference.url = server.url(url);
        reference.checksum = checksum;
        reference.size_bytes = None;
        deal
    };
    let cases = [
        (
            "corrupt in transit",
            with(
                31,
                0xd1,
                "weather.csv.enc",
                dataset::checksum(&data.encrypted),
            ),
            (
                ReplicateStatus::DataDownloadFailed,
                ReplicateStatusCause::DatasetFileBadChecksum,
            ),
        ),
        (
            "truncated by its owner",
            with(32, 0xd2, "truncated.enc", dataset::checksum(&truncated)),
            (
                ReplicateStatus::ComputeFailed,
                ReplicateStatusCause::DatasetFileDecryptionFailed,
            ),
        ),
        (
            "encrypted with another key",
            with(
                33,
                0xd3,
                "other-key.enc",
                dataset::checksum(&other.encrypted),
            ),
            (
                ReplicateStatus::ComputeFailed,
                ReplicateStatusCause::DatasetFileDecryptionFailed,
            ),
        ),
    ];
    for (name, deal, expected) in &cases {
        let task = driver.assign(deal, agent.address);
        assert_eq!(
            driver.run_until_failed(&agent, task),
            *expected,
            "{name}\n{}",
            agent.last_log()
        );
    }
    // The agent says why (a wrong key is told from a corrupt file by the checksum) and no key
    // or plaintext reached the log or the state directory.
    let log = agent.last_log();
    assert!(log.contains("wrong dataset key"), "{log}");
    assert!(log.contains("truncated"), "{log}");
    let mut files = Vec::new();
    files_under(&agent.dir.path().join("state"), 0, &mut files);
    for path in files
        .iter()
        .map(PathBuf::as_path)
        .chain([agent.log_path().as_path()])
    {
        let bytes = std::fs::read(path).unwrap_or_default();
        for secret in [
            data.key.to_base64().to_string(),
            pushed.to_base64().to_string(),
            MARKER.to_string(),
        ] {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{} holds a secret",
                path.display()
            );
        }
    }
}

/// The beneficiary's key pair made by `iexec result generate-encryption-keypair` (the shared
/// vectors), and the beneficiary who pushes the public key.
struct Beneficiary {
    signer: Signer,
    private: BeneficiaryPrivateKey,
    /// What `iexec result push-encryption-key` sends: base64 of the SPKI PEM.
    pushed_value: String,
}

fn beneficiary() -> Beneficiary {
    let dir = repo().join("protocol/tests/data/iexec/result_encryption");
    let pem = std::fs::read_to_string(dir.join("beneficiary_key.pem")).unwrap();
    let pushed_value = std::fs::read_to_string(dir.join("beneficiary_key.pub.pem.b64"))
        .unwrap()
        .trim()
        .to_string();
    Beneficiary {
        signer: Signer::from_bytes(&[0xbe; 32]).unwrap(),
        private: BeneficiaryPrivateKey::parse(&pem).unwrap(),
        pushed_value,
    }
}

/// The beneficiary pushes its result-encryption key, signed over iExec's web2 secret challenge.
fn push_result_key(driver: &mut Driver, who: &Beneficiary) {
    let address = who.signer.address();
    let challenge = web2_secret_challenge(&address, RESULT_ENCRYPTION_KEY_NAME, &who.pushed_value);
    let signature = who.signer.sign_personal(challenge.as_bytes());
    driver
        .scheduler
        .sms_mut()
        .unwrap()
        .secrets_mut()
        .push_result_encryption_key(address, &who.pushed_value, &signature)
        .unwrap();
}

/// The entry names of a zip, sorted.
fn entry_names(zip: &[u8]) -> Vec<String> {
    let tree = unzip_to_tree(zip, &ExtractLimits::default()).unwrap();
    let mut names: Vec<String> = tree.files().map(|(name, _)| name.to_string()).collect();
    names.sort();
    names
}

/// Every file under the agent's directory (state, journal, WAL, cache, results, logs) that
/// contains one of `needles`, as (file, what).
fn leaks(agent: &Agent, needles: &[(&str, &[u8])]) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    files_under(agent.dir.path(), 0, &mut files);
    let mut found = Vec::new();
    for file in files {
        // A file may be renamed or removed by the running agent while we look.
        let bytes = std::fs::read(&file).unwrap_or_default();
        for (what, needle) in needles {
            if contains(&bytes, needle) {
                found.push((file.clone(), what.to_string()));
            }
        }
    }
    found
}

#[test]
fn a_tee_task_with_result_encryption_keeps_and_uploads_only_the_encrypted_result() {
    let (server, _broker, mut driver, agent, app, data) = setup(Policy::simulator());
    let who = beneficiary();
    push_result_key(&mut driver, &who);
    driver.wait_online(&agent);
    let mut deal = tee_deal(&server, &app, &data, 41);
    deal.result_encryption = true;
    deal.beneficiary = who.signer.address();
    let task_id = driver.assign(&deal, agent.address);

    // Between the contribution and the upload the archive waits in the state directory.
    let mut contribution = None;
    driver.run_until(&agent, |m, _| match m {
        Message::Contribution(c) if c.task_id == task_id => {
            contribution = Some(c.clone());
            true
        }
        _ => false,
    });
    let contribution = contribution.unwrap();
    let kept_path = agent
        .dir
        .path()
        .join("state/results")
        .join(format!("{task_id}.zip"));
    let kept = std::fs::read(&kept_path)
        .unwrap_or_else(|e| panic!("{}: {e}; log:\n{}", kept_path.display(), agent.last_log()));
    // iExec's encrypted form, not a result zip.
    assert_eq!(entry_names(&kept), vec![AES_KEY_ENTRY, PAYLOAD_ENTRY]);
    let clear_zip = decrypt_result(&kept, &who.private, &ExtractLimits::default()).unwrap();
    let clear = unzip_to_tree(&clear_zip, &ExtractLimits::default()).unwrap();
    // The contribution is over the clear result (as iExec's TEE post-compute computes it).
    assert_eq!(
        poco::result_hash(&task_id, &result_digest(&clear, "").unwrap()),
        contribution.result_hash
    );
    let stats = clear.read("stats.json").unwrap().to_vec();
    assert!(
        contains(&stats, b"\"mean\""),
        "{}",
        String::from_utf8_lossy(&stats)
    );
    // The clear archive (deterministic, so byte for byte what a clear keep would have written)
    // and the clear result file are nowhere on disk while the task waits.
    let needles: [(&str, &[u8]); 2] = [
        ("the clear iexec_out.zip", clear_zip.as_slice()),
        ("the clear stats.json", stats.as_slice()),
    ];
    assert_eq!(leaks(&agent, &needles), Vec::new());
    // The search can find what it looks for: the encrypted archive is found.
    assert!(!leaks(&agent, &[("the encrypted archive", kept.as_slice())]).is_empty());

    // A crash between the contribution and the upload: the resumed agent uploads the archive it
    // kept, byte for byte (not a recomputed one, and never the clear form).
    let mut agent = agent;
    agent.restart(None);
    driver.run_until_finalized(&agent, task_id);
    let uploaded = server
        .last_upload(&format!("/results/{task_id}"))
        .unwrap()
        .body;
    assert_eq!(uploaded, kept, "the upload is the kept encrypted archive");
    assert_eq!(
        driver
            .contributions(task_id)
            .iter()
            .map(|c| c.result_hash)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        1,
        "one contribution, possibly re-sent"
    );

    // After the end (killed as a crash would, so the WAL stays as it was): still nothing, in
    // the state directory and in the logs of both runs.
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    assert_eq!(leaks(&agent, &needles), Vec::new());
}

#[test]
fn a_tee_task_without_a_beneficiary_key_fails_with_its_cause_and_uploads_nothing() {
    let (server, _broker, mut driver, agent, app, data) = setup(Policy::simulator());
    driver.wait_online(&agent);
    let results = agent.dir.path().join("state/results");

    // The beneficiary never pushed a key: the SMS refuses, with iExec's cause.
    let mut deal = tee_deal(&server, &app, &data, 51);
    deal.result_encryption = true;
    deal.beneficiary = Address([0xb0; 20]);
    let task = driver.assign(&deal, agent.address);
    assert_eq!(
        driver.run_until_failed(&agent, task),
        (
            ReplicateStatus::ComputeFailed,
            ReplicateStatusCause::EncryptionPublicKeyMissing
        )
    );
    assert!(!driver.contributed(task));
    assert!(!results.join(format!("{task}.zip")).exists());

    // The SMS released the task's secrets without a beneficiary key (its deal does not encrypt)
    // while the assignment says the result is encrypted: the agent itself refuses to go on.
    let deal = tee_deal(&server, &app, &data, 52);
    driver.assignment_tamper = Some(Box::new(|a| a.deal.result_encryption = true));
    let task = driver.assign(&deal, agent.address);
    driver.assignment_tamper = None;
    assert_eq!(
        driver.run_until_failed(&agent, task),
        (
            ReplicateStatus::ComputeFailed,
            ReplicateStatusCause::EncryptionPublicKeyMissing
        )
    );
    // It did get its secrets (the refusal is the agent's, not the SMS's)...
    assert!(driver
        .seen
        .iter()
        .any(|m| matches!(m, Message::SecretRequest(r) if r.task_id == task)));
    assert!(
        agent.last_log().contains("released no beneficiary key"),
        "{}",
        agent.last_log()
    );
    // ...and neither contributes nor keeps anything to upload.
    assert!(!driver.contributed(task));
    assert!(!results.join(format!("{task}.zip")).exists());
    assert!(server.nothing_uploaded());
}

#[test]
fn a_standard_task_with_result_encryption_is_declined_with_its_cause() {
    let (server, _broker, mut driver, agent, app, data) = setup(Policy::simulator());
    driver.wait_online(&agent);
    let mut deal = tee_deal(&server, &app, &data, 61);
    deal.tag = Tag::NONE;
    deal.dataset = None;
    deal.result_encryption = true;
    let task = driver.assign(&deal, agent.address);
    let mut cause = None;
    driver.run_until(&agent, |m, _| match m {
        Message::Decline(d) if d.task_id == task => {
            cause = Some(d.cause);
            true
        }
        _ => false,
    });
    assert_eq!(cause, Some(ReplicateStatusCause::ResultEncryptionNeedsTee));
    assert!(!driver.contributed(task));
}
