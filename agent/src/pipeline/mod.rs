//! The task pipeline: admission of assignments, then (with the sandbox and fetch modules) the
//! steps of a replicate, each a journal state transition reported to the scheduler.
//!
//! - [`admission`]: every check an assignment must pass, with the iExec cause of the decline.
//! - [`job`]: fetch, compute, digest and keep the archive; reports to the event loop, which
//!   commits each step to the journal before the message that reports it.
//! - [`tee`]: a TEE task's attested secret request, unsealing in memory, enclave key.
//! - [`upload`]: the result archive to the deal's result store on PLEASE_UPLOAD.

pub mod admission;
pub mod job;
pub mod tee;
pub mod upload;

pub use admission::{admit, Refusal, Resources};
pub use job::{Enclave, JobContext, JobEvent, JobOutcome};
