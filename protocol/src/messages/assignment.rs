//! A task for a worker: [`Assignment`], and the checks a worker runs before it accepts.

use serde::{Deserialize, Serialize};

use super::{DealSummary, TaskLimits, ValidationError};
use crate::poco::{self, WorkerpoolAuthorization};
use crate::primitives::{Address, TaskId};
use crate::signature::SignatureError;

/// A task for one worker, sent on its inbox by the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The deal the task belongs to.
    pub deal: DealSummary,
    /// The task's index in the deal.
    pub task_index: u64,
    /// `keccak256(dealId ‖ uint256(taskIndex))`, checked by [`Assignment::verify`].
    pub task_id: TaskId,
    /// The scheduler's signed permission to contribute.
    pub authorization: WorkerpoolAuthorization,
    /// The limits this task runs under (at most what the worker advertised).
    pub limits: TaskLimits,
}

/// Why a worker must refuse an [`Assignment`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    /// The task id is not `keccak256(dealId ‖ taskIndex)`.
    #[error("task id must be {expected} for this deal and index, found {found}")]
    TaskIdMismatch {
        /// The id computed from the deal and index.
        expected: TaskId,
        /// The id in the assignment.
        found: TaskId,
    },
    /// The task index is outside the deal's `[bot_first, bot_first + bot_size)`.
    #[error("task index must be in [{bot_first}, {bot_first} + {bot_size}), found {index}")]
    TaskIndexOutsideDeal {
        /// The index.
        index: u64,
        /// The deal's first index.
        bot_first: u64,
        /// The deal's task count.
        bot_size: u64,
    },
    /// The authorization is for another task.
    #[error("authorization must be for task {expected}, found {found}")]
    AuthorizationForOtherTask {
        /// The assignment's task.
        expected: TaskId,
        /// The authorization's task.
        found: TaskId,
    },
    /// The authorization is for another worker.
    #[error("authorization must be for worker {expected}, found {found}")]
    AuthorizationForOtherWorker {
        /// This worker.
        expected: Address,
        /// The authorization's worker.
        found: Address,
    },
    /// A TEE deal whose authorization carries the zero enclave challenge.
    #[error("a tee deal needs a non-zero enclave challenge, found the zero address")]
    MissingEnclaveChallenge,
    /// A standard deal whose authorization carries an enclave challenge.
    #[error("a standard deal needs the zero enclave challenge, found {challenge}")]
    UnexpectedEnclaveChallenge {
        /// The challenge found.
        challenge: Address,
    },
    /// The authorization is not signed by the scheduler (or not validly signed at all).
    #[error("authorization signature: {0}")]
    AuthorizationSignature(#[source] SignatureError),
}

impl Assignment {
    /// Whether this is a TEE task (its deal's tag has `tee`).
    pub fn is_tee(&self) -> bool {
        self.deal.tag.is_tee()
    }

    /// Checks what a worker must check before it accepts: the task id derives from the deal and
    /// index, the index is in the deal, the authorization is for this task and this `worker`,
    /// carries an enclave challenge exactly when the deal is a TEE deal, and is signed by
    /// `scheduler` (the workerpool owner).
    ///
    /// # Errors
    /// The first [`AssignmentError`] found; the signature is checked last.
    pub fn verify(&self, scheduler: Address, worker: Address) -> Result<(), AssignmentError> {
        let expected = poco::task_id(&self.deal.deal_id, self.task_index);
        if expected != self.task_id {
            return Err(AssignmentError::TaskIdMismatch {
                expected,
                found: self.task_id,
            });
        }
        let in_deal = self
            .task_index
            .checked_sub(self.deal.bot_first)
            .is_some_and(|offset| offset < self.deal.bot_size);
        if !in_deal {
            return Err(AssignmentError::TaskIndexOutsideDeal {
                index: self.task_index,
                bot_first: self.deal.bot_first,
                bot_size: self.deal.bot_size,
            });
        }
        let authorization = &self.authorization;
        if authorization.chain_task_id != self.task_id {
            return Err(AssignmentError::AuthorizationForOtherTask {
                expected: self.task_id,
                found: authorization.chain_task_id,
            });
        }
        if authorization.worker_wallet != worker {
            return Err(AssignmentError::AuthorizationForOtherWorker {
                expected: worker,
                found: authorization.worker_wallet,
            });
        }
        match (self.is_tee(), authorization.is_tee()) {
            (true, false) => return Err(AssignmentError::MissingEnclaveChallenge),
            (false, true) => {
                return Err(AssignmentError::UnexpectedEnclaveChallenge {
                    challenge: authorization.enclave_challenge,
                })
            }
            _ => {}
        }
        authorization
            .verify(scheduler)
            .map_err(AssignmentError::AuthorizationSignature)
    }

    /// Refuses obviously bad sizes and values of the deal.
    ///
    /// # Errors
    /// The first [`ValidationError`] found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.deal.validate()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::messages::samples::{self, scheduler, worker};
    use crate::signature::Signer;
    use crate::tags::Tag;

    fn tee_assignment() -> (Assignment, Signer) {
        let enclave = Signer::from_bytes(&[9; 32]).unwrap();
        let mut assignment = samples::assignment();
        assignment.deal.tag = Tag::encode(&["tee", "scone"]).unwrap();
        assignment.authorization = WorkerpoolAuthorization::sign(
            &scheduler(),
            worker().address(),
            assignment.task_id,
            enclave.address(),
        );
        (assignment, enclave)
    }

    #[test]
    fn a_well_formed_assignment_verifies() {
        samples::assignment()
            .verify(scheduler().address(), worker().address())
            .unwrap();
        tee_assignment()
            .0
            .verify(scheduler().address(), worker().address())
            .unwrap();
    }

    #[test]
    fn the_sample_authorization_is_the_poco_vector_authorization() {
        let assignment = samples::assignment();
        assert_eq!(
            assignment.task_id.to_string(),
            "0xf8ebfab85541649017b9e8f60973ca108ff01e3c65edeb3efc9b443b2ddd01ae"
        );
        assert_eq!(
            assignment.authorization.signature.to_string(),
            "0x48ba9c93c1f33d30897b9e8d756f1b3f8958caf18342cb713bdd796b59afaddf\
             178c4fce4a09244b9d79837b5998684217297bd6dd7a36b2445a8fef337b73851c"
        );
        assert_eq!(
            scheduler().address().to_string(),
            "0xd468FCcea3cBdAA0049dffD96DE792737b3Ae685"
        );
    }

    #[test]
    fn a_task_id_that_does_not_derive_from_the_deal_is_refused() {
        let mut assignment = samples::assignment();
        assignment.task_index += 1;
        let err = assignment
            .verify(scheduler().address(), worker().address())
            .unwrap_err();
        assert_eq!(
            err,
            AssignmentError::TaskIdMismatch {
                expected: poco::task_id(&assignment.deal.deal_id, assignment.task_index),
                found: assignment.task_id,
            }
        );
    }

    #[test]
    fn a_task_index_outside_the_deal_is_refused() {
        let mut assignment = samples::assignment();
        assignment.deal.bot_size = assignment.task_index - assignment.deal.bot_first;
        let err = assignment
            .verify(scheduler().address(), worker().address())
            .unwrap_err();
        assert!(
            matches!(err, AssignmentError::TaskIndexOutsideDeal { .. }),
            "{err}"
        );
    }

    #[test]
    fn an_authorization_for_another_task_is_refused() {
        let mut assignment = samples::assignment();
        let other = poco::task_id(&assignment.deal.deal_id, assignment.task_index + 1);
        assignment.authorization =
            WorkerpoolAuthorization::sign(&scheduler(), worker().address(), other, Address::ZERO);
        let err = assignment
            .verify(scheduler().address(), worker().address())
            .unwrap_err();
        assert_eq!(
            err,
            AssignmentError::AuthorizationForOtherTask {
                expected: assignment.task_id,
                found: other
            }
        );
    }

    #[test]
    fn an_authorization_for_another_worker_is_refused() {
        let assignment = samples::assignment();
        let me = Signer::from_bytes(&[7; 32]).unwrap().address();
        let err = assignment.verify(scheduler().address(), me).unwrap_err();
        assert_eq!(
            err,
            AssignmentError::AuthorizationForOtherWorker {
                expected: me,
                found: worker().address()
            }
        );
    }

    #[test]
    fn a_tee_deal_without_enclave_challenge_is_refused() {
        let mut assignment = samples::assignment();
        assignment.deal.tag = Tag::TEE;
        let err = assignment
            .verify(scheduler().address(), worker().address())
            .unwrap_err();
        assert_eq!(err, AssignmentError::MissingEnclaveChallenge);
    }

    #[test]
    fn a_standard_deal_with_an_enclave_challenge_is_refused() {
        let (mut assignment, enclave) = tee_assignment();
        assignment.deal.tag = Tag::GPU;
        let err = assignment
            .verify(scheduler().address(), worker().address())
            .unwrap_err();
        assert_eq!(
            err,
            AssignmentError::UnexpectedEnclaveChallenge {
                challenge: enclave.address()
            }
        );
    }

    #[test]
    fn an_authorization_signed_by_someone_else_is_refused() {
        let mut assignment = samples::assignment();
        let impostor = Signer::from_bytes(&[8; 32]).unwrap();
        assignment.authorization = WorkerpoolAuthorization::sign(
            &impostor,
            worker().address(),
            assignment.task_id,
            Address::ZERO,
        );
        let err = assignment
            .verify(scheduler().address(), worker().address())
            .unwrap_err();
        assert_eq!(
            err,
            AssignmentError::AuthorizationSignature(SignatureError::WrongSigner {
                expected: scheduler().address(),
                found: impostor.address()
            })
        );
    }

    #[test]
    fn a_tampered_authorization_signature_is_refused() {
        let mut assignment = samples::assignment();
        assignment.authorization.signature.0[64] = 29;
        let err = assignment
            .verify(scheduler().address(), worker().address())
            .unwrap_err();
        assert_eq!(
            err,
            AssignmentError::AuthorizationSignature(SignatureError::RecoveryByte { found: 29 })
        );
    }
}
