//! Why the ledger refused a call: one variant per `require` a caller may branch on.

use edgepool_protocol::status::ChainTaskStatus;
use edgepool_protocol::{Address, DealId, SignatureError, Tag, TaskId};

/// Why `match_orders` refused a set of orders.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// The request and the workerpool order are for different categories.
    #[error("request category {request} differs from workerpool order category {workerpool}")]
    CategoryMismatch {
        /// The request's.
        request: u64,
        /// The workerpool order's.
        workerpool: u64,
    },
    /// The category does not exist.
    #[error("category {0} does not exist")]
    UnknownCategory(u64),
    /// The request needs more trust than the workerpool offers.
    #[error("requested trust {requested} exceeds the workerpool order's trust {offered}")]
    TrustTooHigh {
        /// The request's trust.
        requested: u64,
        /// The workerpool order's trust.
        offered: u64,
    },
    /// An order's price exceeds the request's maximum for it.
    #[error("{what} price {price} exceeds the request's maximum {max}")]
    PriceTooHigh {
        /// `app`, `dataset` or `workerpool`.
        what: &'static str,
        /// The request's maximum.
        max: u64,
        /// The order's price.
        price: u64,
    },
    /// The deal's tag asks for something the workerpool does not offer.
    #[error("deal tag {deal} is not a subset of the workerpool tag {workerpool}")]
    TagNotOffered {
        /// `app | dataset | request` tags.
        deal: Tag,
        /// The workerpool order's tag.
        workerpool: Tag,
    },
    /// A `tee` deal whose app order does not carry the `tee` tag.
    #[error("a tee deal needs the tee tag on the app order")]
    TeeAppOrderMissing,
    /// The request names another app.
    #[error("request is for app {requested}, the app order is for {ordered}")]
    WrongApp {
        /// The request's app.
        requested: Address,
        /// The order's app.
        ordered: Address,
    },
    /// The request's dataset and the dataset order disagree (one given without the other, or
    /// different addresses).
    #[error("request is for dataset {requested}, the dataset order is for {ordered}")]
    WrongDataset {
        /// The request's dataset (zero: none).
        requested: Address,
        /// The order's dataset (zero: no order).
        ordered: Address,
    },
    /// A restriction excludes a party.
    #[error("{order} order restricts {field} to {allowed}, found {found}")]
    Restricted {
        /// `app`, `dataset`, `workerpool` or `request`.
        order: &'static str,
        /// `app`, `dataset`, `workerpool` or `requester`.
        field: &'static str,
        /// The only party allowed.
        allowed: Address,
        /// The party in this match.
        found: Address,
    },
    /// An order has no volume left.
    #[error("{order} order has no volume left")]
    VolumeExhausted {
        /// `app`, `dataset`, `workerpool` or `request`.
        order: &'static str,
    },
}

/// Why the ledger refused a call. Nothing changed when it did.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The app is not registered.
    #[error("app {0} is not registered")]
    UnknownApp(Address),
    /// The dataset is not registered.
    #[error("dataset {0} is not registered")]
    UnknownDataset(Address),
    /// The workerpool is not registered.
    #[error("workerpool {0} is not registered")]
    UnknownWorkerpool(Address),
    /// No such deal.
    #[error("deal {0} does not exist")]
    UnknownDeal(DealId),
    /// The task was never initialized.
    #[error("task {0} is not initialized")]
    UnknownTask(TaskId),
    /// Registering the same asset twice.
    #[error("{0} is already registered")]
    AlreadyRegistered(Address),
    /// A bad argument to a registration or a category.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// Which argument.
        field: &'static str,
        /// What was expected.
        reason: &'static str,
    },
    /// The orders do not match.
    #[error("orders do not match: {0}")]
    Match(#[from] MatchError),
    /// Not enough free balance to lock or withdraw.
    #[error("account {account} needs {needed} but has {available}")]
    InsufficientBalance {
        /// The account.
        account: Address,
        /// The amount needed.
        needed: u64,
        /// Its free balance.
        available: u64,
    },
    /// An amount would overflow.
    #[error("amount overflow in {0}")]
    Overflow(&'static str),
    /// The task index is outside the deal.
    #[error("task index {index} is outside the deal's tasks [{first}, {first}+{size})")]
    TaskIndexOutOfRange {
        /// The index asked.
        index: u64,
        /// The deal's first index.
        first: u64,
        /// The deal's task count.
        size: u64,
    },
    /// The task exists already.
    #[error("task {0} is already initialized")]
    AlreadyInitialized(TaskId),
    /// The task is not in the status this call needs.
    #[error("task {task} is {found}, expected {expected}")]
    WrongTaskStatus {
        /// The task.
        task: TaskId,
        /// The status needed.
        expected: &'static str,
        /// The status found.
        found: ChainTaskStatus,
    },
    /// Too late for this call.
    #[error("the {deadline} deadline {deadline_ms} has passed (now {now_ms})")]
    DeadlinePassed {
        /// `contribution`, `reveal` or `final`.
        deadline: &'static str,
        /// The deadline (unix ms).
        deadline_ms: u64,
        /// The time of the call.
        now_ms: u64,
    },
    /// Too early to claim.
    #[error("the final deadline {deadline_ms} is not reached (now {now_ms})")]
    FinalDeadlineNotReached {
        /// The final deadline (unix ms).
        deadline_ms: u64,
        /// The time of the call.
        now_ms: u64,
    },
    /// A second contribution by the same worker to the same task.
    #[error("worker {0} already contributed to this task")]
    AlreadyContributed(Address),
    /// A `tee` task contributed without an enclave challenge.
    #[error("a tee task needs a non-zero enclave challenge")]
    EnclaveChallengeRequired,
    /// The WorkerpoolAuthorization was not signed by the workerpool owner for this worker, task
    /// and challenge.
    #[error("authorization is not the workerpool owner's {expected} for this worker, task and challenge: {source}")]
    Unauthorized {
        /// The workerpool owner.
        expected: Address,
        /// Why the signature did not verify.
        source: SignatureError,
    },
    /// The enclave signature does not recover to the enclave challenge.
    #[error("enclave signature is not by the enclave challenge {challenge}: {source}")]
    BadEnclaveSignature {
        /// The challenge.
        challenge: Address,
        /// Why the signature did not verify.
        source: SignatureError,
    },
    /// Reveal by a worker that did not contribute, or revealed already.
    #[error("worker {0} has no unrevealed contribution to this task")]
    NothingToReveal(Address),
    /// Reveal by a worker outside the consensus group.
    #[error("worker {0} did not contribute the consensus hash")]
    NotInConsensus(Address),
    /// The revealed digest does not give the contributed hash or seal.
    #[error("revealed digest does not match the contributed {0}")]
    RevealMismatch(&'static str),
    /// Finalize before every winner revealed and before the reveal deadline.
    #[error("{revealed} of {winners} consensus contributors revealed and the reveal deadline is not reached")]
    RevealsPending {
        /// Reveals so far.
        revealed: u64,
        /// Contributors in the consensus group.
        winners: u64,
    },
    /// Finalize after the reveal deadline with no reveal at all.
    #[error("nobody revealed the consensus")]
    NoReveal,
    /// The SQLite store failed; the in-memory state is unchanged.
    #[error("ledger store: {0}")]
    Store(#[from] rusqlite::Error),
    /// A stored record could not be read back.
    #[error("ledger store holds a corrupt {kind} record {key}: {reason}")]
    Corrupt {
        /// The record kind.
        kind: String,
        /// Its key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A bug: an operation would create or destroy money. Refused, nothing changed.
    #[error("internal error: {0}")]
    Invariant(&'static str),
}
