//! `edgepool-attestation`: TEE evidence (AMD SEV-SNP, Intel TDX and SGX, software) and its
//! verification under a policy.
//!
//! Not built yet: this crate holds only what the workspace needs to build. The attestation issue
//! fills it with evidence types, configfs-tsm and software attesters, verifiers that are pure over
//! bytes with pinned trust anchors and an injected "now", and the policy.
//!
//! # Layout
//!
//! (empty)
