//! See `edgepool_tests::fuzz_entry::computed_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edgepool_tests::fuzz_entry::computed_json(data));
