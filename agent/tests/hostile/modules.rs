//! Adversarial modules in parallel with honest tasks (filled below).
