//! Digits CSV reader (raw or gzip).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = kip_fuzz::scratch_file("digits.csv", data);
    if let Ok(ds) = kip_data::load_digits_csv(&path) {
        assert_eq!(ds.pixels().len(), ds.len() * 64);
        assert!(ds.pixels().iter().all(|v| v.is_finite()));
        assert!(ds.labels().iter().all(|&l| l < 10));
    }
});
