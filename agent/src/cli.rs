//! The command line of `edgepool-agent` (clap definitions only; the work is in [`crate::tools`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// edgepool worker agent and iExec-compatible tools.
#[derive(Debug, Parser)]
#[command(name = "edgepool-agent", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the agent (the systemd service's command).
    Run {
        /// The configuration file.
        #[arg(long, env = "EDGEPOOL_CONFIG", default_value = crate::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Creates the keystore, the configuration and the state directory (idempotent).
    Init(InitArgs),
    /// Checks the configuration, keystore, broker, TEE devices and disk; one line per check.
    Doctor {
        /// The configuration file.
        #[arg(long, env = "EDGEPOOL_CONFIG", default_value = crate::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// One JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Prints what this machine offers (CPU, RAM, disk, GPUs, TEE, tags, sandbox speed).
    Capacity {
        /// The configuration file (its state_dir, system_root, tags and limits are used when it
        /// exists).
        #[arg(long, env = "EDGEPOOL_CONFIG", default_value = crate::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The agent's state from its journal: outbox, sequence numbers, tasks by state.
    Status {
        /// The configuration file.
        #[arg(long, env = "EDGEPOOL_CONFIG", default_value = crate::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The tasks in the journal, newest first.
    Tasks {
        /// The configuration file.
        #[arg(long, env = "EDGEPOOL_CONFIG", default_value = crate::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// One JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// iExec dataset files: encrypt, decrypt, checksum (same format as the iExec SDK).
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// iExec results: digest, encrypt for a beneficiary, decrypt.
    #[command(subcommand)]
    Result(ResultCommand),
    /// iExec tags: encode names to bytes32 and back.
    #[command(subcommand)]
    Tag(TagCommand),
    /// PoCo formulas: task ids, contribution hashes.
    #[command(subcommand)]
    Poco(PocoCommand),
    /// TEE evidence: verify a report or quote, show what this machine produces.
    #[command(subcommand)]
    Attest(AttestCommand),
}

/// The evidence kinds `attest verify` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvidenceKindArg {
    /// An AMD SEV-SNP report (raw binary or hex text).
    Snp,
    /// An Intel TDX quote (DCAP).
    Tdx,
    /// An Intel SGX quote (DCAP).
    Sgx,
}

/// `attest …`
#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Verifies evidence against the pinned roots and the policy; prints the verdict and the
    /// claims. Exit 0 only if the evidence is valid and the policy accepts it.
    Verify {
        /// The report or quote: raw binary, or hex text.
        #[arg(long, value_name = "FILE")]
        evidence: PathBuf,
        /// What the evidence is.
        #[arg(long, value_enum)]
        kind: EvidenceKindArg,
        /// snp: the VCEK or VLEK certificate (DER or PEM).
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
        /// snp: PEM bundle of the ASK or ASVK and the ARK (AMD's cert_chain); the pinned chain of
        /// the product is used when absent.
        #[arg(long, value_name = "FILE")]
        chain: Option<PathBuf>,
        /// tdx/sgx: the collateral JSON.
        #[arg(long, value_name = "FILE")]
        collateral: Option<PathBuf>,
        /// The time to verify at (RFC 3339, e.g. 2025-06-01T00:00:00Z); default: now.
        #[arg(long, value_name = "RFC3339")]
        now: Option<String>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// The policy file; default: the built-in policy (no debug, no software evidence).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Runs this machine's attester and prints the evidence kind, sizes and its claims, or why
    /// there is none.
    Show {
        /// The configuration file (agent.system_root locates configfs-tsm).
        #[arg(long, env = "EDGEPOOL_CONFIG", default_value = crate::config::DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `init …`
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Where to write the configuration.
    #[arg(long, env = "EDGEPOOL_CONFIG", default_value = crate::config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// The state directory (journal, keystore, cache).
    #[arg(long, default_value = "/var/lib/edgepool")]
    pub state_dir: PathBuf,
    /// Broker URL, mqtt://HOST:PORT or mqtts://HOST:PORT.
    #[arg(long)]
    pub broker: String,
    /// Workerpool address.
    #[arg(long)]
    pub pool: String,
    /// Scheduler address: the only signer whose tasks are accepted.
    #[arg(long)]
    pub scheduler: String,
    /// File holding the keystore password (never given on the command line).
    #[arg(long, value_name = "FILE")]
    pub password_file: PathBuf,
    /// Operator tags, comma-separated (gpu; TEE tags are claimed only after attestation).
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Task slots.
    #[arg(long)]
    pub slots: Option<u32>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Replace the existing key and configuration.
    #[arg(long)]
    pub force: bool,
}

/// `dataset …`
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Encrypts IN to OUT (IV ‖ AES-256-CBC); prints {"key": …only when generated, "checksum": …}.
    Encrypt {
        /// File holding the base64 key (as `iexec dataset encrypt` writes it); a new key is
        /// generated and printed when absent.
        #[arg(long, value_name = "F")]
        key_file: Option<PathBuf>,
        /// Plaintext file.
        input: PathBuf,
        /// Encrypted file to write.
        output: PathBuf,
    },
    /// Decrypts IN to OUT; OUT appears only if the whole file decrypted.
    Decrypt {
        /// File holding the base64 key.
        #[arg(long, value_name = "F")]
        key_file: PathBuf,
        /// The expected checksum of the encrypted file (0x + sha256, the on-chain value). With it
        /// a corrupt file and a wrong key are told apart.
        #[arg(long, value_name = "0xHEX")]
        checksum: Option<String>,
        /// Encrypted file.
        input: PathBuf,
        /// Plaintext file to write.
        output: PathBuf,
    },
    /// Prints the on-chain checksum of an (encrypted) dataset file: 0x + sha256.
    Checksum {
        /// The file.
        file: PathBuf,
    },
}

/// `result …`
#[derive(Debug, Subcommand)]
pub enum ResultCommand {
    /// Prints the iExec result digest of PATH (file or directory), or of an output folder
    /// following its computed.json.
    Digest {
        /// Follow DIR/computed.json as the worker does.
        #[arg(long, value_name = "DIR", conflicts_with = "path")]
        iexec_out: Option<PathBuf>,
        /// A file or directory.
        #[arg(required_unless_present = "iexec_out")]
        path: Option<PathBuf>,
    },
    /// Zips IEXEC_OUT_DIR and encrypts it for the beneficiary (iExec result encryption).
    Encrypt {
        /// Beneficiary RSA public key: PEM, or base64 of the PEM as stored in the SMS.
        #[arg(long, value_name = "PEM")]
        public_key: PathBuf,
        /// The output folder to archive.
        iexec_out_dir: PathBuf,
        /// Encrypted zip to write.
        out_zip: PathBuf,
    },
    /// Decrypts an encrypted result to the plain iexec_out.zip.
    Decrypt {
        /// Beneficiary RSA private key (PEM, PKCS#8 or PKCS#1).
        #[arg(long, value_name = "PEM")]
        private_key: PathBuf,
        /// Encrypted result zip.
        in_zip: PathBuf,
        /// Plain iexec_out.zip to write.
        out_zip: PathBuf,
    },
}

/// `tag …`
#[derive(Debug, Subcommand)]
pub enum TagCommand {
    /// Comma-separated names (tee,scone,gramine,tdx,gpu) to a bytes32 hex tag.
    Encode {
        /// For example `tee,gpu`.
        names: String,
    },
    /// A bytes32 hex tag to comma-separated names.
    Decode {
        /// For example `0x…0101`.
        tag: String,
    },
}

/// `poco …`
#[derive(Debug, Subcommand)]
pub enum PocoCommand {
    /// keccak256(dealId ‖ uint256(index)).
    TaskId {
        /// The deal id (0x + 64 hex).
        deal_id: String,
        /// The task index within the deal.
        index: u64,
    },
    /// Prints {"result_hash": …, "result_seal": …} for a contribution.
    Hashes {
        /// The task id.
        #[arg(long)]
        task_id: String,
        /// The result digest.
        #[arg(long)]
        digest: String,
        /// The worker address.
        #[arg(long)]
        worker: String,
    },
}
