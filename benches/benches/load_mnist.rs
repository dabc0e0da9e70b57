//! Loading both MNIST splits (gzip IDX) from `$KIP_DATA_DIR/mnist`.
//! Skips with a message when KIP_DATA_DIR is unset or has no `mnist/`.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn mnist_dir() -> Option<PathBuf> {
    let base = std::env::var_os("KIP_DATA_DIR").filter(|v| !v.is_empty())?;
    let dir = PathBuf::from(base).join("mnist");
    dir.is_dir().then_some(dir)
}

fn bench_load_mnist(c: &mut Criterion) {
    let Some(dir) = mnist_dir() else {
        eprintln!("load_mnist: skipped (set KIP_DATA_DIR to the folder holding mnist/)");
        return;
    };
    let mut g = c.benchmark_group("load_mnist");
    g.sample_size(10);
    // 70000 images of 784 pixels decoded per iteration.
    g.throughput(Throughput::Bytes(70_000 * 784));
    g.bench_function("load_mnist_dir_train_and_test_gz", |b| {
        b.iter(|| {
            let s = kip_data::load_mnist_dir(&dir).expect("MNIST loads");
            assert_eq!(s.train.len() + s.test.len(), 70_000);
            s
        })
    });
    g.finish();
}

criterion_group!(benches, bench_load_mnist);
criterion_main!(benches);
