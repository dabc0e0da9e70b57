//! npy/npz reader: the dataset loader (both layouts), the split loader and
//! the support-set reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = kip_fuzz::scratch_file("data.npz", data);
    for layout in [kip_data::NpzLayout::Nhwc, kip_data::NpzLayout::Nchw] {
        if let Ok(ds) = kip_data::load_npz(&path, layout) {
            assert_eq!(ds.pixels().len(), ds.len() * ds.dim());
            assert!(ds.pixels().iter().all(|v| v.is_finite()));
            assert!(ds.labels().iter().all(|&l| l < ds.n_classes()));
        }
    }
    let _ = kip_data::load_npz_split(&path, kip_data::NpzLayout::Nhwc);
    let _ = kip_data::SupportSet::read_npz(&path);
});
