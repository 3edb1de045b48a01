#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| endpoint_analytics::fuzz::observations_csv(data));
