//! Times the loaders (and optionally the ZCA fit) on real data.
//!
//! ```text
//! KIP_DATA_DIR=../shared/data cargo run --release -p kip-data --example load_timing [-- --zca]
//! ```

use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(base) = std::env::var_os("KIP_DATA_DIR").map(PathBuf::from) else {
        eprintln!("KIP_DATA_DIR is not set; nothing to time");
        return Ok(());
    };
    let zca = std::env::args().any(|a| a == "--zca");
    let t = Instant::now();
    let mnist = kip_data::load_mnist_dir(&base.join("mnist"))?;
    println!(
        "load_mnist_dir: {} + {} images in {:.3} s",
        mnist.train.len(),
        mnist.test.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let cifar = kip_data::load_cifar10_dir(&base.join("cifar10"))?;
    println!(
        "load_cifar10_dir: {} + {} images in {:.3} s ({})",
        cifar.train.len(),
        cifar.test.len(),
        t.elapsed().as_secs_f64(),
        cifar.notes.join("; ")
    );
    if zca {
        for (name, ds) in [("mnist", &mnist.train), ("cifar10", &cifar.train)] {
            let t = Instant::now();
            let tr = kip_data::Preprocess::Zca { strength: 0.1 }.fit(ds)?;
            let fit = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let _ = tr.apply(ds);
            println!(
                "ZCA on {name} ({} x {}): fit {fit:.1} s, apply {:.1} s",
                ds.len(),
                ds.dim(),
                t.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
