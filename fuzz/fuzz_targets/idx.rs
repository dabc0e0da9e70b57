//! IDX reader: the first two bytes choose where the input splits into the
//! images file and the labels file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let rest = &data[2..];
    let cut = usize::from(u16::from_le_bytes([data[0], data[1]])) % (rest.len() + 1);
    let images = kip_fuzz::scratch_file("images-idx3-ubyte", &rest[..cut]);
    let labels = kip_fuzz::scratch_file("labels-idx1-ubyte", &rest[cut..]);
    if let Ok(ds) = kip_data::load_idx(&images, &labels) {
        assert_eq!(ds.labels().len(), ds.len());
        assert_eq!(ds.pixels().len(), ds.len() * ds.dim());
        assert!(ds.labels().iter().all(|&l| l < ds.n_classes()));
    }
});
