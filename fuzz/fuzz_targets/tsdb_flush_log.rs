#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gantry_fuzz::metrics::tsdb_flush_log(data));
