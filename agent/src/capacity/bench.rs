//! The start-up sandbox benchmark: how much wasmi fuel this machine burns per second.
//!
//! A fixed module spins an integer loop (a 64-bit LCG step) until its fuel runs out. The sandbox
//! settings are the ones tasks run with (`consume_fuel`, eager compilation, so that no
//! translation cost is charged to the run). A short calibration slice picks a fuel budget that
//! takes about [`TARGET`] here, bounded by [`MIN_FUEL`] and [`MAX_FUEL`], so a slow board does not
//! spend seconds on it and a fast server still measures long enough to be stable.

use std::time::{Duration, Instant};

use wasmi::{
    CompilationMode, Config, Engine, Linker, Module, Store, TypedFunc, TypedResumableCall,
};

/// The benchmark module, `bench.wat` in binary form: `spin(x)` loops forever; only running out
/// of fuel stops it. Binary because the agent's wasmi has no WAT parser (a smaller binary).
pub const BENCH_WASM: &[u8] = include_bytes!("bench.wasm");

/// The fuel of the calibration slice.
pub const CALIBRATION_FUEL: u64 = 2_000_000;
/// The least fuel of the measured run.
pub const MIN_FUEL: u64 = 2_000_000;
/// The most fuel of the measured run.
pub const MAX_FUEL: u64 = 500_000_000;
/// How long the measured run aims to take.
pub const TARGET: Duration = Duration::from_millis(30);
/// The fuel slice when debug assertions are on (see [`fuel_per_second`]'s note on the stack).
pub const DEBUG_SLICE_FUEL: u64 = 16_384;

/// Why the benchmark could not measure.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The fixed module did not compile or instantiate, or fuel could not be set (a wasmi
    /// regression: the module and the configuration are fixed).
    #[error("benchmark engine expected to load the fixed module and meter it, found: {0}")]
    Engine(#[source] wasmi::Error),
    /// The run stopped with something other than running out of fuel.
    #[error("benchmark run expected to stop on out-of-fuel, found {0}")]
    UnexpectedStop(String),
}

/// Runs the benchmark and returns the fuel burnt per second of wall-clock time (at least 1).
///
/// Takes about [`TARGET`] plus the calibration slice; call it from a blocking thread.
///
/// # Stack
/// wasmi dispatches by tail calls; built with debug assertions (the dev profile) they are not
/// eliminated and every executed instruction adds a native stack frame, so the run is cut into
/// slices of [`DEBUG_SLICE_FUEL`] there. The measured rate of such a build means nothing anyway.
///
/// # Errors
/// [`BenchError`] when the module does not load or does not stop on out-of-fuel.
pub fn fuel_per_second() -> Result<u64, BenchError> {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        .compilation_mode(CompilationMode::Eager);
    let engine = Engine::new(&config);
    let module = Module::new(&engine, BENCH_WASM).map_err(BenchError::Engine)?;
    let mut store = Store::new(&engine, ());
    let instance = Linker::<()>::new(&engine)
        .instantiate_and_start(&mut store, &module)
        .map_err(BenchError::Engine)?;
    let spin = instance
        .get_typed_func::<i64, i64>(&store, "spin")
        .map_err(BenchError::Engine)?;

    let (burnt, elapsed) = run(&mut store, &spin, CALIBRATION_FUEL)?;
    let budget = u64::try_from(u128::from(rate(burnt, elapsed)) * TARGET.as_millis() / 1000)
        .unwrap_or(MAX_FUEL)
        .clamp(MIN_FUEL, MAX_FUEL);
    let (burnt, elapsed) = run(&mut store, &spin, budget)?;
    Ok(rate(burnt, elapsed))
}

/// Runs `spin` until about `fuel` is burnt; returns the fuel really burnt and the time it took.
///
/// The fuel is given in slices of [`slice_fuel`] and the call resumed after each: wasmi's
/// tail-call dispatch grows the native stack by one frame per instruction when wasmi is built
/// with debug assertions (the dev profile), and overflows it after a few hundred thousand
/// instructions. Returning on out-of-fuel unwinds it.
fn run(
    store: &mut Store<()>,
    spin: &TypedFunc<i64, i64>,
    fuel: u64,
) -> Result<(u64, Duration), BenchError> {
    let slice = slice_fuel(fuel);
    let mut added = slice.min(fuel);
    store.set_fuel(added).map_err(BenchError::Engine)?;
    let started = Instant::now();
    let mut call = spin
        .call_resumable(&mut *store, 1)
        .map_err(|e| BenchError::UnexpectedStop(e.to_string()))?;
    loop {
        match call {
            TypedResumableCall::OutOfFuel(pending) => {
                // Fuel left below the next instruction's cost was not burnt.
                let left = store.get_fuel().map_err(BenchError::Engine)?;
                if added >= fuel {
                    return Ok((added.saturating_sub(left), started.elapsed()));
                }
                let next = slice.min(fuel - added);
                added += next;
                store.set_fuel(left + next).map_err(BenchError::Engine)?;
                call = pending
                    .resume(&mut *store)
                    .map_err(|e| BenchError::UnexpectedStop(e.to_string()))?;
            }
            TypedResumableCall::Finished(value) => {
                return Err(BenchError::UnexpectedStop(format!("a return of {value}")))
            }
            TypedResumableCall::HostTrap(_) => {
                return Err(BenchError::UnexpectedStop("a host trap".to_string()))
            }
        }
    }
}

/// One slice of fuel: the whole budget in optimised builds, small enough to keep the stack
/// shallow when debug assertions are on (see [`run`]).
fn slice_fuel(budget: u64) -> u64 {
    if cfg!(debug_assertions) {
        DEBUG_SLICE_FUEL
    } else {
        budget
    }
}

fn rate(fuel: u64, elapsed: Duration) -> u64 {
    let nanos = elapsed.as_nanos().max(1);
    u64::try_from(u128::from(fuel) * 1_000_000_000 / nanos)
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fuel_per_second_is_positive_and_bounded_in_time() {
        let started = Instant::now();
        let rate = fuel_per_second().unwrap();
        let elapsed = started.elapsed();
        assert!(rate > 0);
        // Generous: debug builds and a loaded CI machine.
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
        eprintln!("fuel_per_second = {rate} in {elapsed:?}");
    }

    #[test]
    fn the_committed_wasm_is_bench_wat_converted() {
        let converted = wat::parse_str(include_str!("bench.wat")).unwrap();
        assert_eq!(converted, BENCH_WASM);
    }

    #[test]
    fn rate_never_divides_by_zero() {
        assert_eq!(rate(10, Duration::ZERO), 10_000_000_000);
        assert_eq!(rate(0, Duration::from_secs(1)), 1);
    }
}
