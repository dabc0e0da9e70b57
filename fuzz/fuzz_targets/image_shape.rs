//! The `--image-shape HxWxC` parser: an accepted shape has positive sides,
//! a product that fits in `usize`, and prints back to a string that parses
//! to the same shape.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(shape) = s.parse::<kip_core::ImageShape>() {
        assert!(shape.h > 0 && shape.w > 0 && shape.c > 0);
        let d = shape.checked_dim().expect("an accepted shape's product fits");
        assert_eq!(d, shape.dim());
        assert_eq!(shape.to_string().parse::<kip_core::ImageShape>(), Ok(shape));
    }
});
