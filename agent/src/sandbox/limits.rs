//! The sandbox's fixed limits and the wasmi configuration that enforces them.
//!
//! The per-task limits (fuel, memory, wall clock, output) come from
//! [`TaskLimits`](edgepool_protocol::messages::TaskLimits); the ones here bound what a task
//! cannot choose: the call stack, tables and captured streams.

use edgepool_protocol::messages::TaskLimits;
use wasmi::{CompilationMode, Config, StoreLimits, StoreLimitsBuilder};

/// Fuel per slice of execution: between slices the wall clock is checked. A tight integer loop
/// burns about 5,000 M fuel/s here, so a slice is a few milliseconds of guest time; switching
/// slices costs a few microseconds.
pub const FUEL_SLICE: u64 = 10_000_000;

/// Deepest call nesting. wasmi's default (1,000) is too low for ordinary recursive C code; a
/// deeper module traps with `StackOverflow`. wasmi keeps the guest's call stack on the heap, so
/// this does not depend on the host thread's stack.
pub const MAX_RECURSION_DEPTH: usize = 20_000;

/// Largest value stack (wasmi's registers of all live frames), in bytes.
pub const MAX_VALUE_STACK_BYTES: usize = 32 * 1024 * 1024;

/// Most tables a module may have, and most elements in each.
pub const MAX_TABLES: usize = 4;
/// See [`MAX_TABLES`].
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Most bytes kept of stdout, and of stderr.
pub const STDIO_CAP: usize = 1024 * 1024;

/// The engine configuration every module is compiled with.
///
/// - fuel metering on, with wasmi's default costs;
/// - eager compilation: lazy translation charges the compilation of a function to whichever run
///   calls it first, which makes fuel differ between runs;
/// - no start function (a WASI command starts at `_start`, and a start function would run during
///   instantiation, outside the fuel slices and the wall-clock checks);
/// - one linear memory (multi-memory off), so the memory limit bounds all of it;
/// - the stack limits above.
pub fn engine_config() -> Config {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        .compilation_mode(CompilationMode::Eager)
        .allow_start_fn(false)
        .wasm_multi_memory(false)
        .set_max_recursion_depth(MAX_RECURSION_DEPTH)
        .set_max_stack_height(MAX_VALUE_STACK_BYTES);
    config
}

/// The store limits of one run: memory from the task, tables fixed, one instance and one
/// memory; growing past a limit traps (`GrowthOperationLimited`) instead of returning -1, so the
/// failure is typed rather than left to the app's handling of `malloc` returning NULL.
pub fn store_limits(limits: &TaskLimits) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX))
        .table_elements(MAX_TABLE_ELEMENTS)
        .instances(1)
        .memories(1)
        .tables(MAX_TABLES)
        .trap_on_grow_failure(true)
        .build()
}
