//! See `edgepool_tests::fuzz_entry::sms_unseal`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| edgepool_tests::fuzz_entry::sms_unseal(data));
