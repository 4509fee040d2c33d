//! `edgepool-protocol`: the wire protocol v1 of edgepool and the iExec formats it must match
//! byte for byte.
//!
//! This crate is pure: it performs no I/O, never reads the clock and never draws randomness on its
//! own. Time and random number generators are arguments; files are [`tree::FileTree`]s or
//! `std::io` streams handed in by the caller.
//!
//! # Layout
//!
//! - [`primitives`]: [`Address`], [`Bytes32`], [`TaskId`], [`DealId`], [`Digest`].
//! - [`hash`]: Keccak-256 and SHA-256.
//! - [`signature`]: EIP-191 signing and recovery ([`Signer`], [`Signature`]).
//! - [`poco`]: task id, result hash and seal, WorkerpoolAuthorization, enclave messages.
//! - [`tags`]: the iExec tag bitmap.
//! - [`status`]: replicate and task statuses, notifications and causes with iExec's names.
//! - [`tree`]: a small file-tree abstraction with an in-memory implementation.
//! - [`digest`]: the iExec result digest (`computed.json`, web2 file/tree, web3 callback).
//! - [`dataset`]: iExec dataset encryption (`IV ‖ AES-256-CBC`), streaming.
//! - [`result_archive`]: the `iexec_out.zip` archive and iExec result encryption.
//! - [`messages`]: protocol v1 message bodies.
//! - [`envelope`]: the signed envelope every MQTT payload travels in, and replay protection.
//! - [`topics`]: MQTT topic builders and parsers.
//! - [`sms`]: the web3 secret challenge and the sealed release of TEE secrets (X25519 → HKDF →
//!   AES-256-GCM).
//!
//! # Example
//!
//! ```
//! use edgepool_protocol::{poco, DealId, Digest, Signer};
//!
//! let deal: DealId = "0x58d26b541819f73799466901f1b44a3a299a34717f02c5540e75a58176872f9c".parse()?;
//! let task = poco::task_id(&deal, 1);
//! assert_eq!(task.to_string(), "0x76b9ca6e7b36af39891a4a8b0f48d3f2bfb8d1685c045c71750b7e14e445fbb1");
//!
//! let worker = Signer::from_hex("0x4ee562246c04d281b1651e49ff69d2992f753165fa9b983c98f8a99b7f5268a6")?;
//! let digest: Digest = "0x9c39b4810a0488d608da1c02e61f319b79256267cebf2f376b669d3e2dfc39c0".parse()?;
//! let hashes = poco::ContributionHashes::new(&worker.address(), &task, &digest);
//! assert_eq!(
//!     hashes.result_seal.to_string(),
//!     "0xb60bea845889f397c9da865ce9f18be835c451ef318f13fd9ad34e5b03a97fec"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod dataset;
pub mod digest;
pub mod envelope;
pub mod hash;
pub mod messages;
pub mod poco;
pub mod primitives;
pub mod result_archive;
pub mod signature;
pub mod sms;
pub mod status;
pub mod tags;
pub mod topics;
pub mod tree;

pub use primitives::{Address, Bytes32, DealId, Digest, ParseHexError, TaskId};
pub use signature::{Signature, SignatureError, Signer};
pub use tags::Tag;
