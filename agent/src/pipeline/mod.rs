//! The task pipeline: admission of assignments, then (with the sandbox and fetch modules) the
//! steps of a replicate, each a journal state transition reported to the scheduler.
//!
//! Built so far: [`admission`] (every check an assignment must pass, with the iExec cause of the
//! decline). The runner that fetches, computes and contributes is the rest of the task-pipeline
//! issue.

pub mod admission;

pub use admission::{admit, Refusal, Resources};
