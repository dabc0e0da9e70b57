//! `kip gram`'s point reader: a `.npy` header (magic, version, header
//! length, the dict with descr / fortran_order / shape) to the shape and
//! values, as a `.npy` file and inside an `.npz`. Whatever is accepted has
//! a shape whose product is the number of values, finite values, and an
//! image shape that does not overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn check(path: &std::path::Path) {
    if let Ok(p) = kip_data::read_points(path, None) {
        let n: Option<usize> = p.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        assert_eq!(n, Some(p.data.len()), "shape {:?}", p.shape);
        assert!(p.data.iter().all(|v| v.is_finite()));
        assert!(p.len() > 0 && p.dim() > 0);
        if let Some(s) = p.image_shape() {
            assert_eq!(s.checked_dim(), Some(p.dim()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(&kip_fuzz::scratch_file("points.npy", data));
    check(&kip_fuzz::scratch_file("points.npz", data));
});
