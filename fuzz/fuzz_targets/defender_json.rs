#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| endpoint_analytics::fuzz::defender_json(data));
