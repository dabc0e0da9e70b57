//! Real-data tests: set KIP_DATA_DIR (e.g. ../shared/data); they skip with a
//! printed reason otherwise, and fail when KIP_REQUIRE_DATA=1.

mod common;
#[path = "support/test_env.rs"]
mod test_env;

use kip_data::{check_available, digits, load_cifar10_dir, load_mnist_dir, resolve, ImageShape};

fn sum(p: &[f32]) -> f64 {
    p.iter().map(|&v| v as f64).sum()
}

#[test]
fn mnist_loads_with_exact_histograms() {
    let Some(dir) = test_env::real_data("mnist") else {
        return;
    };
    let t = std::time::Instant::now();
    let s = load_mnist_dir(&dir).unwrap();
    eprintln!("load_mnist_dir (both splits, gz): {:.3} s", t.elapsed().as_secs_f64());
    assert_eq!(s.train.len(), 60000);
    assert_eq!(s.test.len(), 10000);
    assert_eq!(s.train.shape(), ImageShape::new(28, 28, 1));
    // Histograms from shared/data/README.md.
    assert_eq!(
        s.train.class_counts(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        s.test.class_counts(),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // Pixel sums computed independently with python3:
    //   b = gzip.open('mnist/train-images-idx3-ubyte.gz').read(); sum(b[16:16+784])  -> 27525
    //   sum(b[-784:]) -> 20920 (last training image)
    //   b = gzip.open('mnist/t10k-images-idx3-ubyte.gz').read(); sum(b[16:16+784])   -> 18454
    assert_eq!(sum(s.train.image(0)), 27525.0);
    assert_eq!(sum(s.train.image(59999)), 20920.0);
    assert_eq!(sum(s.test.image(0)), 18454.0);
    assert_eq!(s.train.labels()[0], 5);
    assert_eq!(s.train.class_names()[3], "3");
    assert!(s.notes.is_empty());
}

#[test]
fn cifar10_loads_with_partial_test_note() {
    let Some(dir) = test_env::real_data("cifar10") else {
        return;
    };
    let s = load_cifar10_dir(&dir).unwrap();
    assert_eq!(s.train.len(), 50000);
    assert_eq!(s.train.shape(), ImageShape::new(32, 32, 3));
    assert_eq!(s.train.class_counts(), vec![5000; 10]);
    assert_eq!(s.test.len(), 1000);
    assert_eq!(
        s.test.class_counts(),
        vec![103, 89, 100, 103, 90, 86, 112, 102, 106, 109]
    );
    assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
    assert!(
        s.notes[0].contains("partial")
            && s.notes[0].contains("1000")
            && s.notes[0].contains("test_batch_first1000.bin.gz"),
        "{:?}",
        s.notes
    );
    assert_eq!(s.train.class_names()[0], "airplane");
    assert_eq!(s.train.class_names()[9], "truck");
    // Computed with python3 from the decompressed records:
    //   b = gzip.open('cifar10/data_batch_1.bin.gz').read(): label b[0] = 6,
    //   sum(b[1:3073]) = 317790, first pixel R,G,B = b[1], b[1025], b[2049] = 59, 62, 63
    //   b = gzip.open('cifar10/test_batch_first1000.bin.gz').read(): label 3, sum 332962
    assert_eq!(s.train.labels()[0], 6);
    assert_eq!(sum(s.train.image(0)), 317790.0);
    assert_eq!(&s.train.image(0)[..3], &[59.0, 62.0, 63.0]);
    assert_eq!(s.test.labels()[0], 3);
    assert_eq!(sum(s.test.image(0)), 332962.0);
}

#[test]
fn digits_embedded_and_on_disk_agree() {
    let s = digits();
    assert_eq!(s.train.len() + s.test.len(), 1797);
    assert_eq!((s.train.len(), s.test.len()), (1438, 359));
    // python3: row 1 of digits.csv.gz, sum of the 64 pixel fields = 294, label 0.
    assert_eq!(sum(s.train.image(0)), 294.0);
    let Some(dir) = test_env::real_data("digits") else {
        return;
    };
    let disk = kip_data::load_digits_csv(&dir.join("digits.csv.gz")).unwrap();
    assert_eq!(disk.len(), 1797);
    assert_eq!(disk.pixels(), kip_data::digits_all().pixels());
}

#[test]
fn resolve_finds_folders_from_parent_or_folder() {
    let Some(mnist) = test_env::real_data("mnist") else {
        return;
    };
    let parent = mnist.parent().unwrap().to_path_buf();
    assert_eq!(check_available("mnist", Some(&parent)).unwrap(), mnist);
    assert_eq!(check_available("mnist", Some(&mnist)).unwrap(), mnist);
    let s = resolve("mnist", Some(&parent)).unwrap();
    assert_eq!(s.train.len(), 60000);
    if test_env::real_data("cifar10").is_some() {
        let c = check_available("cifar10", Some(&parent)).unwrap();
        assert!(c.ends_with("cifar10"));
    }
    // Fashion-MNIST is not in the shared data: Missing lists both folders.
    let e = check_available("fashion-mnist", Some(&parent)).unwrap_err();
    common::assert_msg(&e, &["fashion-mnist", "t10k-labels-idx1-ubyte[.gz]", "fashion_mnist"]);
}
