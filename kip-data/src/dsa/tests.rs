//! DSA unit tests: hand-computed and torch-computed expected values.

use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// `h × w × 1` image with pixel `(r, c) = w·r + c + offset`.
fn ramp(h: usize, w: usize, offset: f32) -> (ImageShape, Vec<f32>) {
    (
        ImageShape::new(h, w, 1),
        (0..h * w).map(|k| k as f32 + offset).collect(),
    )
}

fn affine_of(shape: ImageShape, img: &[f32], theta: [f32; 6]) -> Vec<f32> {
    let mut out = img.to_vec();
    affine(shape, &mut out, &theta, &mut Vec::new());
    out
}

fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
}

#[test]
fn defaults_are_param_diff_aug() {
    let d = Dsa::default();
    assert_eq!(
        [
            d.prob_flip,
            d.ratio_scale,
            d.ratio_rotate,
            d.ratio_crop_pad,
            d.ratio_cutout
        ],
        [0.5, 1.2, 15.0, 0.125, 0.5]
    );
    assert_eq!([d.brightness, d.saturation, d.contrast], [1.0, 2.0, 0.5]);
    let names: Vec<_> = DsaFamily::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(names.join("_"), "color_crop_cutout_flip_scale_rotate");
}

#[test]
fn flip_prob_one_mirrors_columns_prob_zero_is_identity() {
    // 2×3×2: pixel (r, c) channel k = 10r + 2c + k.
    let shape = ImageShape::new(2, 3, 2);
    let x = vec![0., 1., 2., 3., 4., 5., 10., 11., 12., 13., 14., 15.];
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut y = [x.clone(), x.clone()].concat();
    let always = Dsa {
        prob_flip: 1.0,
        ..Dsa::default()
    };
    always.apply_family(DsaFamily::Flip, shape, &mut y, &mut rng);
    let mirrored = vec![4., 5., 2., 3., 0., 1., 14., 15., 12., 13., 10., 11.];
    assert_eq!(y, [mirrored.clone(), mirrored].concat());
    let mut z = x.clone();
    Dsa {
        prob_flip: 0.0,
        ..Dsa::default()
    }
    .apply_family(DsaFamily::Flip, shape, &mut z, &mut rng);
    assert_eq!(z, x);
}

#[test]
fn crop_with_forced_shift_moves_and_zero_fills() {
    let (shape, x) = ramp(3, 3, 1.0); // [[1,2,3],[4,5,6],[7,8,9]]
    let mut y = x.clone();
    crop(shape, &mut y, 1, -1, &mut Vec::new());
    assert_eq!(y, vec![0., 4., 5., 0., 7., 8., 0., 0., 0.]);
    let mut y = x.clone();
    crop(shape, &mut y, -2, 2, &mut Vec::new()); // out[2][0] = x[0][2]
    assert_eq!(y, vec![0., 0., 0., 0., 0., 0., 3., 0., 0.]);
    // Channels move together.
    let shape = ImageShape::new(1, 2, 2);
    let mut y = vec![1., 2., 3., 4.];
    crop(shape, &mut y, 0, 1, &mut Vec::new());
    assert_eq!(y, vec![3., 4., 0., 0.]);
}

#[test]
fn crop_draws_span_minus_four_to_four_on_32() {
    let shape = ImageShape::new(32, 16, 1);
    assert_eq!(Dsa::default().crop_shift(shape), (4, 2));
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let draws = Dsa::default().crop_draws(shape, 2000, &mut rng);
    let (ymin, ymax) = draws.iter().fold((0, 0), |(a, b), &(ty, _)| (a.min(ty), b.max(ty)));
    let (xmin, xmax) = draws.iter().fold((0, 0), |(a, b), &(_, tx)| (a.min(tx), b.max(tx)));
    assert_eq!((ymin, ymax, xmin, xmax), (-4, 4, -2, 2));
}

/// The authors' cutout, literally: clamp every index of the square.
fn peer_cutout(h: usize, w: usize, oy: usize, ox: usize, ky: usize, kx: usize) -> Vec<f32> {
    let mut mask = vec![1.0; h * w];
    for a in 0..ky {
        for b in 0..kx {
            let y = (a as isize + oy as isize - (ky / 2) as isize).clamp(0, h as isize - 1) as usize;
            let x = (b as isize + ox as isize - (kx / 2) as isize).clamp(0, w as isize - 1) as usize;
            mask[y * w + x] = 0.0;
        }
    }
    mask
}

#[test]
fn cutout_zeroes_expected_square_on_8x8() {
    let shape = ImageShape::new(8, 8, 1);
    assert_eq!(Dsa::default().cutout_size(shape), (4, 4));
    let zeros = |oy, ox| {
        let mut y = vec![1.0; 64];
        cutout(shape, &mut y, oy, ox, 4, 4);
        (0..64)
            .filter(|&k| y[k] == 0.0)
            .map(|k| (k / 8, k % 8))
            .collect::<Vec<_>>()
    };
    let square = |r: std::ops::Range<usize>, c: std::ops::Range<usize>| {
        r.flat_map(|i| c.clone().map(move |j| (i, j))).collect::<Vec<_>>()
    };
    assert_eq!(zeros(0, 0), square(0..2, 0..2));
    assert_eq!(zeros(8, 8), square(6..8, 6..8));
    assert_eq!(zeros(3, 5), square(1..5, 3..7));
    assert_eq!(zeros(8, 0), square(6..8, 0..2));
    // Every offset the authors can draw, for even and odd sides, matches
    // their clamped scatter; channels are all zeroed.
    let shape = ImageShape::new(8, 6, 2);
    for (ky, kx) in [(4, 3), (3, 4), (1, 1), (5, 2), (8, 6), (0, 0)] {
        for oy in 0..8 + 1 - ky % 2 {
            for ox in 0..6 + 1 - kx % 2 {
                let mut y = vec![1.0; 96];
                cutout(shape, &mut y, oy, ox, ky, kx);
                let mask: Vec<f32> = peer_cutout(8, 6, oy, ox, ky, kx)
                    .into_iter()
                    .flat_map(|m| [m, m])
                    .collect();
                assert_eq!(y, mask, "k=({ky},{kx}) o=({oy},{ox})");
            }
        }
    }
}

#[test]
fn cutout_draws_span_zero_to_h_for_even_side() {
    let shape = ImageShape::new(32, 5, 1); // sides 16 (even) and 3 (odd)
    assert_eq!(Dsa::default().cutout_size(shape), (16, 3));
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let draws = Dsa::default().cutout_draws(shape, 3000, &mut rng);
    assert_eq!(draws.iter().map(|d| d.0).max(), Some(32));
    assert_eq!(draws.iter().map(|d| d.0).min(), Some(0));
    assert_eq!(draws.iter().map(|d| d.1).max(), Some(4));
}

#[test]
fn unit_scale_and_zero_rotation_are_identity() {
    let shape = ImageShape::new(5, 7, 3);
    let x = pseudo_random(shape.dim(), 4);
    for theta in [scale_theta(1.0, 1.0), rotate_theta(0.0)] {
        let y = affine_of(shape, &x, theta);
        assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() <= 1e-6), "{theta:?}");
    }
    let dsa = Dsa {
        ratio_scale: 1.0,
        ratio_rotate: 0.0,
        ..Dsa::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut y = [x.clone(), x.clone()].concat();
    dsa.apply_family(DsaFamily::Scale, shape, &mut y, &mut rng);
    dsa.apply_family(DsaFamily::Rotate, shape, &mut y, &mut rng);
    assert!(y.iter().zip(x.iter().cycle()).all(|(a, b)| (a - b).abs() <= 1e-6));
}

#[test]
fn rotate_90_is_exact_anticlockwise_rotation() {
    // The authors' matrix at φ = 90° is [[0, −1, 0], [1, 0, 0]]:
    // out[i][j] = x[j][3 − i], i.e. numpy's rot90 (anticlockwise).
    let (shape, x) = ramp(4, 4, 0.0);
    let expected = vec![3., 7., 11., 15., 2., 6., 10., 14., 1., 5., 9., 13., 0., 4., 8., 12.];
    assert_eq!(affine_of(shape, &x, [0.0, -1.0, 0.0, 1.0, 0.0, 0.0]), expected);
    // Through the f32 angle (cos(π/2) ≈ −4e-8): equal to 1e-5.
    let y = affine_of(shape, &x, rotate_theta(std::f32::consts::FRAC_PI_2));
    assert!(y.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5), "{y:?}");
    // ratio_rotate 180 with r = 0.75 is +90°.
    let dsa = Dsa {
        ratio_rotate: 180.0,
        ..Dsa::default()
    };
    assert!((dsa.angle(0.75) - std::f32::consts::FRAC_PI_2).abs() < 1e-6);
}

#[test]
fn scale_samples_hand_computed_bilinear_values() {
    let (shape, x) = ramp(4, 4, 0.0); // x[r][c] = 4r + c
                                      // s = ½ (zoom in ×2): source coordinates 0.75, 1.25, 1.75, 2.25 on
                                      // both axes; a linear image gives 4·iy + ix exactly.
    let y = affine_of(shape, &x, scale_theta(0.5, 0.5));
    assert_eq!(y[0], 3.75); // (0, 0): 4·0.75 + 0.75
    assert_eq!(y[4 + 2], 6.75); // (1, 2): 4·1.25 + 1.75
    assert_eq!(y[15], 11.25); // (3, 3): 4·2.25 + 2.25
                              // s = 2 (zoom out): sources −1.5, 0.5, 2.5, 4.5; zero outside.
    let y = affine_of(shape, &x, scale_theta(2.0, 2.0));
    assert_eq!(y[5], 2.5); // mean of x[0..2][0..2] = (0+1+4+5)/4
    assert_eq!(y[10], 12.5); // (10+11+14+15)/4
    assert_eq!(y[0], 0.0);
    assert_eq!(y[15], 0.0);
    // s_x = 1.25, s_y = 1: column sources −0.375 and 3.375, half the
    // bilinear taps outside: 0.625·x[1][0] and 0.625·x[1][3].
    let (shape, x) = ramp(4, 4, 1.0);
    let y = affine_of(shape, &x, scale_theta(1.25, 1.0));
    assert_eq!(y[4], 0.625 * 5.0);
    assert_eq!(y[7], 0.625 * 8.0);
    // The draw maps r ∈ [0, 1) onto [1/1.2, 1.2).
    let dsa = Dsa::default();
    assert!((dsa.scale_factor(0.0) - 1.0 / 1.2).abs() < 1e-6);
    assert!((dsa.scale_factor(1.0) - 1.2).abs() < 1e-6);
}

#[test]
fn affine_matches_torch_grid_sample() {
    // Expected values from torch 2.15.0 (CPU): F.grid_sample(x,
    // F.affine_grid(theta, x.shape, align_corners=False),
    // align_corners=False) on a 1×2×4×5 tensor, permuted to HWC.
    let shape = ImageShape::new(4, 5, 2);
    let x: Vec<f32> = (0..shape.dim()).map(|k| k as f32 * 0.25 - 2.0).collect();
    #[rustfmt::skip]
    let scale: [f32; 40] = [
        -1.15, -0.95, -0.9875003, -0.7375003, -0.43750024, -0.18750024, 0.112499826, 0.36249983,
        0.44999963, 0.64999956, 0.55, 0.74999994, 1.1375, 1.3875, 1.6875001, 1.9375,
        2.2375002, 2.4875002, 2.1499994, 2.3499992, 2.2499995, 2.4499996, 3.2624998, 3.5124998,
        3.8125, 4.0625, 4.3624997, 4.6124997, 3.8499985, 4.0499988, 3.9499993, 4.149999,
        5.3875003, 5.6375003, 5.9375, 6.1875, 6.4875, 6.7375007, 5.549998, 5.749998,
    ];
    // φ = 0.3 rad; torch's f32 cos and sin.
    #[rustfmt::skip]
    let rotate: [f32; 40] = [
        -0.9971755, -0.8486348, -0.9972082, -0.7895634, -0.5554617, -0.3054617, 0.51324725, 0.76324725,
        0.72232485, 0.85613143, -0.48923796, -0.23923798, 0.57947075, 0.82947075, 1.6481795, 1.8981794,
        2.7168882, 2.9668882, 3.381414, 3.607571, 1.5940334, 1.8201901, 2.7831116, 3.0331116,
        3.8518207, 4.101821, 4.9205294, 5.1705294, 5.989238, 6.239238, 2.2214205, 2.355227,
        4.9867525, 5.236753, 6.055462, 6.305462, 5.565393, 5.773038, 4.265072, 4.4136124,
    ];
    let (c, s) = (0.9553365, 0.29552022);
    assert!((rotate_theta(0.3)[0] - c).abs() < 1e-6 && (rotate_theta(0.3)[3] - s).abs() < 1e-6);
    for (theta, expected) in [(scale_theta(1.1, 0.85), scale), ([c, -s, 0.0, s, c, 0.0], rotate)] {
        let y = affine_of(shape, &x, theta);
        let err = y.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 1e-6, "{theta:?}: max error {err}");
    }
}

#[test]
fn color_ops_give_hand_computed_values() {
    let shape = ImageShape::new(1, 2, 3);
    let x = vec![1., 2., 6., 0., 0., 3.];
    // Brightness −¼ with identity saturation (1) and contrast (1).
    let mut y = x.clone();
    color(shape, &mut y, -0.25, 1.0, 1.0);
    assert_eq!(y, vec![0.75, 1.75, 5.75, -0.25, -0.25, 2.75]);
    // Saturation ½ around the pixel means 3 and 1.
    let mut y = x.clone();
    saturation(shape, &mut y, 0.5);
    assert_eq!(y, vec![2., 2.5, 4.5, 0.5, 0.5, 2.]);
    // Contrast 1.5 around the image mean 2.
    let mut y = x.clone();
    contrast(&mut y, 1.5);
    assert_eq!(y, vec![0.5, 2., 8., -1., -1., 3.5]);
    // All three in order: +1 → means 4 and 2; saturation 0 → grey
    // [4,4,4,2,2,2]; contrast 2 around 3 → [5,5,5,1,1,1].
    let mut y = x.clone();
    color(shape, &mut y, 1.0, 0.0, 2.0);
    assert_eq!(y, vec![5., 5., 5., 1., 1., 1.]);
    // r·saturation = 1 and r + contrast = 1 are identities.
    let shape = ImageShape::new(2, 4, 3);
    let x = pseudo_random(shape.dim(), 6);
    let mut y = x.clone();
    saturation(shape, &mut y, 1.0);
    assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() <= 1e-6));
    let mut y = x.clone();
    contrast(&mut y, 1.0);
    assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() <= 1e-6));
}

#[test]
fn color_draws_are_brightness_then_saturation_then_contrast() {
    let shape = ImageShape::new(2, 2, 3);
    let x = pseudo_random(3 * shape.dim(), 7);
    let dsa = Dsa::default();
    let mut y = x.clone();
    dsa.apply_family(DsaFamily::Color, shape, &mut y, &mut ChaCha8Rng::seed_from_u64(8));
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let r: Vec<f32> = (0..9).map(|_| rng.random()).collect();
    let mut z = x.clone();
    for (k, img) in z.chunks_exact_mut(shape.dim()).enumerate() {
        color(shape, img, (r[k] - 0.5) * 1.0, r[3 + k] * 2.0, r[6 + k] + 0.5);
    }
    assert_eq!(y, z);
    assert_ne!(y, x);
}

fn batch_run(seed: u64, x: &[f32], shape: ImageShape) -> (DsaFamily, Vec<f32>) {
    let mut y = x.to_vec();
    let f = Dsa::default().apply_batch(shape, &mut y, &mut ChaCha8Rng::seed_from_u64(seed));
    (f, y)
}

#[test]
fn apply_batch_uses_all_six_families_and_is_reproducible() {
    let shape = ImageShape::new(8, 8, 3);
    let x = pseudo_random(5 * shape.dim(), 9);
    let mut seen = std::collections::HashSet::new();
    for seed in 0..200 {
        let (f, y) = batch_run(seed, &x, shape);
        seen.insert(f);
        let (g, z) = batch_run(seed, &x, shape);
        assert_eq!(f, g);
        assert!(y.iter().zip(&z).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
}

#[test]
fn apply_batch_is_independent_of_thread_count() {
    let shape = ImageShape::new(6, 5, 3);
    let x = pseudo_random(7 * shape.dim(), 10);
    let run = |k: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(k).build().unwrap();
        pool.install(|| (0..60).map(|seed| batch_run(seed, &x, shape)).collect::<Vec<_>>())
    };
    let (one, two) = (run(1), run(2));
    for ((f, y), (g, z)) in one.iter().zip(&two) {
        assert_eq!(f, g);
        assert!(y.iter().zip(z).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
    assert!(one.iter().any(|(_, y)| y != &x));
}
