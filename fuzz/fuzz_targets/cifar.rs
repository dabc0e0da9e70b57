//! CIFAR-10 binary batch reader (raw or gzip).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = kip_fuzz::scratch_file("data_batch.bin", data);
    let names: Vec<String> = kip_data::CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
    if let Ok(ds) = kip_data::load_cifar_batch(&path, &names) {
        assert_eq!(ds.pixels().len(), ds.len() * 32 * 32 * 3);
        assert!(ds.labels().iter().all(|&l| l < names.len()));
    }
});
