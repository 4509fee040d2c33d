//! Running `_start` in fuel slices with a wall-clock deadline, and naming what stopped it.
//!
//! wasmi can resume a call that ran out of fuel, so the guest runs in slices of
//! [`FUEL_SLICE`]: between slices the sandbox checks the real time and the task's total fuel,
//! then tops up and resumes. No second thread pokes the store. Fuel used is the same however the
//! slices fall: a slice's unspent fuel is not counted and the next slice starts where it stopped.

use std::time::Instant;

use wasmi::errors::{ErrorKind, InstantiationError};
use wasmi::{Func, ResumableCall, Store, TrapCode};

use super::error::Failure;
use super::limits::FUEL_SLICE;
use super::memfs::{QuotaExceeded, Volume};
use super::HostState;

/// Why the call stopped.
#[derive(Debug)]
pub(super) enum Stop {
    /// `_start` returned.
    Finished,
    /// The fuel budget is spent.
    OutOfFuel,
    /// The deadline passed.
    WallClock,
    /// A trap, an exit or a host error.
    Error(wasmi::Error),
}

/// Calls `func` with `budget` total fuel of which `used` is already spent (by instantiation).
/// Returns why it stopped and the total fuel used.
pub(super) fn call_sliced(
    store: &mut Store<HostState>,
    func: Func,
    budget: u64,
    mut used: u64,
    deadline: Instant,
) -> (Stop, u64) {
    let mut slice = FUEL_SLICE.min(budget.saturating_sub(used));
    if let Err(error) = store.set_fuel(slice) {
        return (Stop::Error(error), used);
    }
    let mut result = func.call_resumable(&mut *store, &[], &mut []);
    loop {
        let left = store.get_fuel().unwrap_or(0);
        used = used.saturating_add(slice.saturating_sub(left));
        match result {
            Ok(ResumableCall::Finished) => return (Stop::Finished, used),
            Ok(ResumableCall::HostTrap(trap)) => {
                return (Stop::Error(trap.into_host_error()), used)
            }
            Err(error) => return (Stop::Error(error), used),
            Ok(ResumableCall::OutOfFuel(pending)) => {
                let remaining = budget.saturating_sub(used);
                if remaining == 0 || pending.required_fuel() > remaining {
                    return (Stop::OutOfFuel, used);
                }
                if Instant::now() >= deadline {
                    return (Stop::WallClock, used);
                }
                crate::failpoints::crash_point("sandbox.between_slices");
                slice = FUEL_SLICE.max(pending.required_fuel()).min(remaining);
                if let Err(error) = store.set_fuel(slice) {
                    return (Stop::Error(error), used);
                }
                result = pending.resume(&mut *store, &mut []);
            }
        }
    }
}

/// What a wasmi error means for the task: `None` for a clean `proc_exit(0)`.
///
/// A quota hit in `/iexec_out` wins over the error it caused (the host call stopped the guest
/// with a generic message); then exits, then trap codes, then memory and table errors raised at
/// instantiation.
pub(super) fn classify(
    error: &wasmi::Error,
    output: &Volume,
    fuel_limit: u64,
    memory_limit: u64,
) -> Option<Failure> {
    match output.exceeded() {
        Some(QuotaExceeded::Bytes { limit }) => return Some(Failure::OutputBytes { limit }),
        Some(QuotaExceeded::Entries { limit }) => return Some(Failure::OutputFiles { limit }),
        None => {}
    }
    if let Some(code) = error.i32_exit_status() {
        return (code != 0).then_some(Failure::Exit { code });
    }
    if let Some(code) = error.as_trap_code() {
        return Some(match code {
            TrapCode::OutOfFuel => Failure::OutOfFuel { limit: fuel_limit },
            TrapCode::StackOverflow => Failure::StackOverflow,
            TrapCode::GrowthOperationLimited => Failure::MemoryLimit { memory_limit },
            other => Failure::Trap {
                code: format!("{other:?}"),
            },
        });
    }
    Some(match error.kind() {
        ErrorKind::Memory(_)
        | ErrorKind::Table(_)
        | ErrorKind::Instantiation(
            InstantiationError::FailedToInstantiateMemory(_)
            | InstantiationError::FailedToInstantiateTable(_)
            | InstantiationError::TooManyMemories
            | InstantiationError::TooManyTables,
        ) => Failure::MemoryLimit { memory_limit },
        ErrorKind::Instantiation(InstantiationError::ElementSegmentDoesNotFit { .. }) => {
            Failure::Trap {
                code: format!("{:?}", TrapCode::TableOutOfBounds),
            }
        }
        ErrorKind::Linker(e) => Failure::NotACommand(e.to_string()),
        ErrorKind::Instantiation(e) => Failure::NotACommand(e.to_string()),
        _ => Failure::Host(error.to_string()),
    })
}
