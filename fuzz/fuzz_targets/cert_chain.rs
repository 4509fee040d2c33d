//! See `edgepool_tests::fuzz_entry::cert_chain`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edgepool_tests::fuzz_entry::cert_chain(data));
