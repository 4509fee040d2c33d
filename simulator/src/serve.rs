//! `edgepool-sim serve`, `deal` and `report`: a long-running local workerpool for external
//! agents, and the two clients of its control API (`/control/…` on the store).
//!
//! `serve` keeps its identity in `--state DIR` (`scheduler.key`, `pool.address`, so a restart
//! keeps the addresses agents were configured with), writes `DIR/serve.json` (broker, store,
//! pool, scheduler: what `deal` and `report` read to find it) and, when the agent binary is
//! available, a ready agent (`DIR/agent/agent.toml`, its keystore and password file).
//!
//! Restarts (`kill -9` included) keep what agents and links depend on, all in the state dir:
//! the pool's journal (`pool.sqlite`), the ledger (`ledger.sqlite`), the SMS's vault
//! (`sms.sqlite`, 0600: enclave keys of TEE tasks, dataset keys, result keys), the store
//! (`store/`: published apps, datasets, files and uploaded results) on the same port
//! (`store.port`), and the embedded broker's port (`broker.port`). A port that is taken on
//! restart is an error naming the file, never a silent move. With `--broker URL` the pool
//! acknowledges what it receives only once journaled ([`Acks::AfterCommit`]), so the broker
//! delivers again what a killed serve had not handled; the embedded broker dies with the
//! process and loses its sessions (use an external broker for crash safety).
//!
//! The serve's deals have one requester, who is also their beneficiary: its secp256k1 key
//! (`beneficiary.key`) and its RSA result key (`beneficiary_key.pem`, PKCS#8) are made on the
//! first start; the public RSA key is pushed to the SMS at every start (signed by the
//! beneficiary, as `iexec result push-encryption-key` does), so a deal sent with
//! `--encrypt-result` is uploaded encrypted and `edgepool-agent result decrypt --private-key
//! STATE/beneficiary_key.pem` opens it.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use edgepool_attestation::policy::Policy;
use edgepool_protocol::dataset::{self as dataset_crypto, DatasetKey};
use edgepool_protocol::hash::sha256;
use edgepool_protocol::messages::TaskLimits;
use edgepool_protocol::primitives::{Address, Digest};
use edgepool_protocol::result_archive::BeneficiaryPrivateKey;
use edgepool_protocol::signature::Signer;
use edgepool_protocol::sms::{
    web2_secret_challenge, web3_secret_challenge, RESULT_ENCRYPTION_KEY_NAME,
};
use edgepool_protocol::tags::Tag;
use serde::{Deserialize, Serialize};

use crate::broker::EmbeddedBroker;
use crate::economy::{DatasetOffer, DealOffer, Market};
use crate::ledger::Ledger;
use crate::pool::DealRequest;
use crate::service::{now_ms, Acks, Pool, PoolOptions, PoolRemote};
use crate::sms::Sms;
use crate::store::{ControlRequest, Store, StoreHandle};

/// What `serve` writes to `STATE/serve.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServeInfo {
    /// The broker URL.
    pub broker: String,
    /// The store (and control API) base URL.
    pub store: String,
    /// The workerpool address.
    pub pool: Address,
    /// The scheduler address.
    pub scheduler: Address,
}

/// A file sent with a deal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamedFile {
    /// File name.
    pub name: String,
    /// Base64 content.
    pub base64: String,
}

/// The body of `POST /control/deals`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DealBody {
    /// The app module.
    pub app: NamedFile,
    /// The dataset.
    pub dataset: Option<NamedFile>,
    /// Input files.
    pub input_files: Vec<NamedFile>,
    /// `iexec_args`.
    pub args: String,
    /// Tag names, comma-separated.
    pub tag: String,
    /// Trust.
    pub trust: u64,
    /// Category reference time (s).
    pub time_ref_secs: u64,
    /// Tasks.
    pub volume: u64,
    /// Initial replicas.
    pub replicas: usize,
    /// Encrypt the result for the serve's beneficiary (a TEE deal).
    #[serde(default)]
    pub result_encryption: bool,
    /// Publish the dataset encrypted (a random key, iExec's IV ‖ AES-256-CBC) and push its key
    /// to the SMS signed by the serve's dataset owner; the dataset order is restricted to the
    /// app, the workerpool and the requester (a TEE deal).
    #[serde(default)]
    pub encrypt_dataset: bool,
}

fn state_file(state: &Path, name: &str) -> PathBuf {
    state.join(name)
}

/// Runs `serve` until the process is stopped.
///
/// # Errors
/// When the state, broker, store or pool cannot be set up.
pub fn serve(broker_url: Option<String>, state: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    // Absolute: the agent config written below names paths in it.
    let state =
        &std::fs::canonicalize(state).with_context(|| format!("resolving {}", state.display()))?;
    let signer = key_file(state, "scheduler.key")?;
    let dataset_owner = key_file(state, "dataset_owner.key")?;
    let pool_path = state_file(state, "pool.address");
    let pool_address: Address = match std::fs::read_to_string(&pool_path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: {e}", pool_path.display()))?,
        Err(_) => {
            let a = Address(rand::random());
            std::fs::write(&pool_path, a.to_string())?;
            a
        }
    };
    let _embedded;
    let acks = if broker_url.is_some() {
        Acks::AfterCommit
    } else {
        Acks::OnReceipt
    };
    let broker_url = match broker_url {
        Some(url) => url,
        None => {
            // The same port as before a restart: agents were configured with it.
            let port_path = state_file(state, "broker.port");
            let b = match read_port(&port_path)? {
                Some(port) => EmbeddedBroker::start_on(port).map_err(|e| {
                    anyhow::anyhow!(
                        "the embedded broker cannot take port {port} again ({}): {e}; stop what \
                         holds it, or delete that file to take a new port (the agents' \
                         config names the old one)",
                        port_path.display()
                    )
                })?,
                None => EmbeddedBroker::start()?,
            };
            std::fs::write(&port_path, b.port().to_string())?;
            let url = b.url();
            _embedded = b;
            url
        }
    };
    // The store keeps what was published and uploaded, on the same port: links handed out
    // before a restart (deals' app and dataset URLs, result links) still answer after it.
    let store_port_path = state_file(state, "store.port");
    let store_port = read_port(&store_port_path)?;
    let store = Store::start_persistent(&state_file(state, "store"), store_port.unwrap_or(0))
        .map_err(|e| match store_port {
            Some(port) => anyhow::anyhow!(
                "{e}: the store's port {port} comes from {}; stop what holds it, or delete \
                 that file to take a new port (links to the old one will fail)",
                store_port_path.display()
            ),
            None => anyhow::anyhow!("{e}"),
        })?;
    std::fs::write(&store_port_path, store.port().to_string())?;
    // The ledger lives in the state dir: balances, scores and settlements survive a restart.
    let ledger_path = state_file(state, "ledger.sqlite");
    let ledger = Ledger::open(&ledger_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", ledger_path.display()))?;
    let market = Market::new(
        std::sync::Arc::new(std::sync::Mutex::new(ledger)),
        signer.address(),
        &format!("edgepool-sim serve {pool_address}"),
    )
    .map_err(anyhow::Error::msg)?;
    // The SMS's vault: a TEE task placed before a restart gets its secrets after it.
    let sms_path = state_file(state, "sms.sqlite");
    let mut sms = Sms::open_persistent(signer.address(), Policy::simulator(), &sms_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", sms_path.display()))?;
    let beneficiary = beneficiary(state, &mut sms)?;
    let (progress_tx, progress) = std::sync::mpsc::channel();
    // The pool's journal lives there too: deals, tasks and replicas survive a restart, and the
    // workers are told what to do next.
    let journal_path = state_file(state, "pool.sqlite");
    let options = PoolOptions::new(
        pool_address,
        signer,
        Box::new(market.hooks()),
        store.handle(),
    )
    .with_progress(progress_tx)
    .with_sms(sms, market.workerpool())
    .with_journal(journal_path)
    .with_acks(acks);
    let pool = Pool::start(&broker_url, options)?;
    let served = Served {
        remote: pool.remote(),
        store: store.handle(),
        market,
        requester: beneficiary.address(),
        dataset_owner,
    };
    store.set_control(move |request| control(&served, request));
    let info = ServeInfo {
        broker: broker_url.clone(),
        store: store.base_url(),
        pool: pool_address,
        scheduler: pool.scheduler(),
    };
    std::fs::write(
        state_file(state, "serve.json"),
        serde_json::to_vec_pretty(&info)?,
    )?;
    println!("broker     {}", info.broker);
    println!("store      {}", info.store);
    println!("pool       {}", info.pool);
    println!("scheduler  {}", info.scheduler);
    println!(
        "beneficiary {} (result key {})",
        beneficiary.address(),
        state_file(state, BENEFICIARY_KEY_FILE).display()
    );
    match crate::agents::agent_binary() {
        Ok(bin) => {
            let dir = state.join("agent");
            std::fs::create_dir_all(&dir)?;
            let config = dir.join("agent.toml");
            // Made once: a restart keeps the agent's identity (and its broker, same port).
            if config.exists() {
                println!("agent      a ready config in {}", dir.display());
            } else {
                let (_, worker) =
                    crate::agents::init(&bin, &dir, &broker_url, pool_address, pool.scheduler())?;
                println!(
                    "agent      {worker}: a ready config, keystore and password file in {}",
                    dir.display()
                );
            }
            println!(
                "           run it: EDGEPOOL_IDENTITY_PASSWORD_FILE={} {} run --config {}",
                dir.join("password").display(),
                bin.display(),
                config.display()
            );
        }
        Err(e) => println!("agent      (no config written: {e})"),
    }
    println!(
        "submit     edgepool-sim deal --state {} --app apps/hello/hello.wasm --args World",
        state.display()
    );
    println!("report     edgepool-sim report --state {}", state.display());
    let _ = std::io::stdout().flush();
    for line in progress {
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

/// The beneficiary's RSA private key in the state directory (PKCS#8 PEM, 0600).
pub const BENEFICIARY_KEY_FILE: &str = "beneficiary_key.pem";

/// The serve's requester and beneficiary: its signing key and RSA result key from the state
/// directory (made on the first start), the public RSA key pushed to `sms`.
fn beneficiary(state: &Path, sms: &mut Sms) -> anyhow::Result<Signer> {
    let key_path = state_file(state, "beneficiary.key");
    let signer = match std::fs::read_to_string(&key_path) {
        Ok(hex) => Signer::from_hex(hex.trim())
            .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?,
        Err(_) => {
            let signer = Signer::random(&mut rand::thread_rng());
            let hex: String = signer
                .secret_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            write_private(&key_path, &hex)?;
            signer
        }
    };
    let rsa_path = state_file(state, BENEFICIARY_KEY_FILE);
    let rsa = match std::fs::read_to_string(&rsa_path) {
        Ok(pem) => BeneficiaryPrivateKey::parse(&pem)
            .map_err(|e| anyhow::anyhow!("{}: {e}", rsa_path.display()))?,
        Err(_) => {
            let key = BeneficiaryPrivateKey::generate(
                &mut rand::rngs::OsRng,
                crate::runner::BENEFICIARY_KEY_BITS,
            )
            .map_err(|e| anyhow::anyhow!("making the beneficiary key: {e}"))?;
            let pem = key.to_pem().map_err(|e| anyhow::anyhow!("{e}"))?;
            write_private(&rsa_path, &pem)?;
            key
        }
    };
    let pem = rsa
        .public_key()
        .to_pem()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let value = base64::engine::general_purpose::STANDARD.encode(pem);
    if sms.secrets().has_result_key(&signer.address()) {
        // Kept in the SMS's vault by an earlier start.
        return Ok(signer);
    }
    let challenge = web2_secret_challenge(&signer.address(), RESULT_ENCRYPTION_KEY_NAME, &value);
    sms.push_result_encryption_key(
        signer.address(),
        &value,
        &signer.sign_personal(challenge.as_bytes()),
    )
    .map_err(|e| anyhow::anyhow!("pushing the beneficiary key: {e}"))?;
    Ok(signer)
}

/// A secp256k1 key kept (hex, 0600) in `STATE/name`, made on the first start.
fn key_file(state: &Path, name: &str) -> anyhow::Result<Signer> {
    let key_path = state_file(state, name);
    match std::fs::read_to_string(&key_path) {
        Ok(hex) => {
            Signer::from_hex(hex.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))
        }
        Err(_) => {
            let signer = Signer::random(&mut rand::thread_rng());
            let hex = zeroize::Zeroizing::new(
                signer
                    .secret_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>(),
            );
            write_private(&key_path, &hex)?;
            Ok(signer)
        }
    }
}

/// The port kept in `path` by an earlier start, if any.
fn read_port(path: &Path) -> anyhow::Result<Option<u16>> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse::<u16>()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: not a port: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// What the control API works with.
struct Served {
    remote: PoolRemote,
    store: StoreHandle,
    market: Market,
    /// The deals' requester and beneficiary.
    requester: Address,
    /// The owner of the datasets sent with `encrypt_dataset` (pushes their keys to the SMS).
    dataset_owner: Signer,
}

fn control(served: &Served, request: ControlRequest) -> (u16, String) {
    let error = |status: u16, message: String| {
        (status, serde_json::json!({ "error": message }).to_string())
    };
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/report") => match served.remote.report() {
            Some(report) => (
                200,
                serde_json::to_string_pretty(&report).unwrap_or_default(),
            ),
            None => error(503, "the pool has stopped".into()),
        },
        ("POST", "/deals") => {
            let body: DealBody = match serde_json::from_slice(&request.body) {
                Ok(b) => b,
                Err(e) => return error(400, format!("expected a deal JSON body: {e}")),
            };
            match submit(served, body) {
                Ok(ids) => (200, serde_json::json!({ "tasks": ids }).to_string()),
                Err(e) => error(400, e),
            }
        }
        _ => error(404, format!("no {} {}", request.method, request.path)),
    }
}

fn decode(file: &NamedFile) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(&file.base64)
        .map_err(|e| format!("{}: bad base64: {e}", file.name))
}

/// Refuses a deal whose app, dataset or input file is not named by one plain file name, before
/// anything is published: the dataset's name is the file the app sees (the assignment refuses any
/// other), and the store keeps each file under its name.
fn check_names(body: &DealBody) -> Result<(), String> {
    let files = [("app", &body.app)]
        .into_iter()
        .chain(body.dataset.iter().map(|f| ("dataset", f)))
        .chain(body.input_files.iter().map(|f| ("input file", f)));
    for (kind, file) in files {
        if !edgepool_protocol::messages::is_plain_file_name(&file.name) {
            return Err(format!(
                "{kind} name {:?}: expected one plain file name (no '/', '\\' or NUL, not '.' or '..')",
                file.name
            ));
        }
    }
    Ok(())
}

fn submit(served: &Served, body: DealBody) -> Result<Vec<String>, String> {
    let Served {
        remote,
        store,
        market,
        requester,
        dataset_owner,
    } = served;
    let requester = *requester;
    check_names(&body)?;
    let publish = |path: String, bytes: Vec<u8>| {
        store
            .try_publish(&path, bytes)
            .map_err(|e| format!("publishing {path}: {e}"))
    };
    let app = decode(&body.app)?;
    let app_url = publish(format!("apps/{}", body.app.name), app.clone())?;
    let dataset = match &body.dataset {
        Some(f) if body.encrypt_dataset => Some(encrypted_dataset(
            remote,
            store,
            market,
            dataset_owner,
            &f.name,
            &decode(f)?,
        )?),
        Some(f) => {
            let bytes = decode(f)?;
            let url = publish(format!("datasets/{}", f.name), bytes.clone())?;
            Some(DatasetOffer {
                // The simulator plays the dataset owner of a plain dataset sent with a deal.
                owner: Address([0xd0; 20]),
                name: f.name.clone(),
                url,
                checksum: Digest(sha256(&bytes)),
                size_bytes: bytes.len() as u64,
                encrypted: false,
                restricted: false,
            })
        }
        None if body.encrypt_dataset => {
            return Err("encrypt_dataset without a dataset".to_string());
        }
        None => None,
    };
    let mut input_files = Vec::new();
    for f in &body.input_files {
        input_files.push(publish(format!("files/{}", f.name), decode(f)?)?);
    }
    let tag: Tag = if body.tag.trim().is_empty() {
        Tag::NONE
    } else {
        body.tag.parse().map_err(|e| format!("tag: {e}"))?
    };
    let opened = market.open_deal(
        &DealOffer {
            app_name: body.app.name.clone(),
            app_url,
            app_checksum: Digest(sha256(&app)),
            app_size: app.len() as u64,
            dataset,
            requester,
            args: body.args,
            input_files,
            tag,
            trust: body.trust,
            time_ref_secs: body.time_ref_secs,
            volume: body.volume,
            result_storage_proxy: Some(store.base_url().to_string()),
            result_encryption: body.result_encryption,
        },
        now_ms(),
    )?;
    let ids = remote.submit(DealRequest {
        deal: opened.summary,
        limits: TaskLimits::default(),
        replicas: body.replicas,
        replica_timeout_ms: None,
        dataset_restrictions: opened.dataset_restrictions,
    })?;
    Ok(ids.iter().map(ToString::to_string).collect())
}

/// Encrypts `plain` with a new key (iExec's IV ‖ AES-256-CBC), publishes only the encrypted
/// file (under a path of its own: two deals' copies never overwrite each other), registers it
/// for `owner` and pushes its key to the pool's SMS signed by `owner`, as `iexec dataset
/// push-secret` does. The plain bytes and the key never reach the store or the logs.
fn encrypted_dataset(
    remote: &PoolRemote,
    store: &StoreHandle,
    market: &Market,
    owner: &Signer,
    name: &str,
    plain: &[u8],
) -> Result<DatasetOffer, String> {
    let key = DatasetKey::generate(&mut rand::thread_rng());
    let bytes = dataset_crypto::encrypt(&key, rand::random(), plain);
    let checksum = Digest(sha256(&bytes));
    let short: String = checksum
        .0
         .0
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let url = store
        .try_publish(&format!("datasets/{short}/{name}"), bytes.clone())
        .map_err(|e| format!("publishing dataset {name}: {e}"))?;
    let offer = DatasetOffer {
        owner: owner.address(),
        name: name.to_string(),
        url,
        checksum,
        size_bytes: bytes.len() as u64,
        encrypted: true,
        restricted: true,
    };
    let address = market.register_dataset(&offer)?;
    let value = zeroize::Zeroizing::new(key.to_base64().to_string());
    let signature = owner.sign_personal(web3_secret_challenge(&address, &value).as_bytes());
    let owner_address = owner.address();
    let pushed = remote
        .with_sms(move |sms| match sms {
            Some(sms) => sms
                .push_dataset_secret(address, owner_address, &value, &signature)
                .map_err(|e| e.to_string()),
            None => Err("the pool has no SMS".to_string()),
        })
        .ok_or("the pool did not answer")?;
    pushed.map_err(|e| format!("pushing the key of dataset {name} to the SMS: {e}"))?;
    Ok(offer)
}

/// Reads `STATE/serve.json`.
///
/// # Errors
/// When no `serve` wrote it.
pub fn info(state: &Path) -> anyhow::Result<ServeInfo> {
    let path = state_file(state, "serve.json");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "reading {} (is `edgepool-sim serve --state {}` running?)",
            path.display(),
            state.display()
        )
    })?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// One HTTP/1.1 request to the serve's control API; returns (status, body).
///
/// # Errors
/// When the serve is unreachable.
pub fn request(
    store: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let authority = store
        .strip_prefix("http://")
        .context("expected an http:// store")?;
    let mut stream = TcpStream::connect(authority)
        .with_context(|| format!("connecting to the serve at {store}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    // HTTP/1.0: the answer comes whole, never chunked (a large report was, and did not parse).
    let head = format!(
        "{method} /control{path} HTTP/1.0\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    if status == 0 {
        bail!("the serve at {store} gave no HTTP answer");
    }
    Ok((status, body))
}

/// Reads a local file into a [`NamedFile`].
///
/// # Errors
/// When it cannot be read.
pub fn named_file(path: &Path) -> anyhow::Result<NamedFile> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("a file name")?;
    Ok(NamedFile {
        name,
        base64: base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}
