//! See `edgepool_tests::fuzz_entry::dcap_verify`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edgepool_tests::fuzz_entry::dcap_verify(data));
