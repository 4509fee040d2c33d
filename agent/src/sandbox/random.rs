//! `random_get`: a deterministic random bit generator seeded by the task id.
//!
//! The generator is ChaCha20 as implemented by `rand_chacha` 0.3 (`ChaCha20Rng`, whose output
//! stream is value-stable across versions and platforms), keyed with
//! `sha256("edgepool/sandbox/random_get/v1" ‖ task id)`. Every honest agent hands the same bytes
//! to the same task, so an app that draws random numbers still reaches consensus; a different
//! task gets an unrelated stream. It is not a secret: anyone who knows the task id can replay it.

use edgepool_protocol::hash::sha256;
use edgepool_protocol::TaskId;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Domain separation for the seed, so it never equals another hash of the task id.
pub const SEED_DOMAIN: &[u8] = b"edgepool/sandbox/random_get/v1";

/// The seed of a task's generator.
pub fn seed(task_id: &TaskId) -> [u8; 32] {
    let mut input = Vec::with_capacity(SEED_DOMAIN.len() + 32);
    input.extend_from_slice(SEED_DOMAIN);
    input.extend_from_slice(task_id.as_bytes());
    sha256(&input).0
}

/// The generator for a task.
pub fn task_rng(task_id: &TaskId) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(seed(task_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgepool_protocol::Bytes32;
    use rand_chacha::rand_core::RngCore;

    fn draw(task: u8) -> [u8; 16] {
        let mut out = [0u8; 16];
        task_rng(&TaskId(Bytes32([task; 32]))).fill_bytes(&mut out);
        out
    }

    #[test]
    fn one_task_always_gets_the_same_bytes() {
        assert_eq!(draw(1), draw(1));
    }

    #[test]
    fn different_tasks_get_different_bytes() {
        assert_ne!(draw(1), draw(2));
    }
}
