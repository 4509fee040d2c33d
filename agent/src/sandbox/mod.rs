//! The wasm sandbox: wasmi with an in-memory, deterministic WASI preview 1 (the iExec app contract).
