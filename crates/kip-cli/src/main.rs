//! `kip`: dataset distillation by kernel ridge regression (KIP, Label Solve).

mod cli;
mod commands;
mod data;
mod error;
mod progress;
mod rundir;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if let Some(n) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
            eprintln!("error: --threads {n}: {e}");
            std::process::exit(2);
        }
    }
    match commands::run(cli.command) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            std::process::exit(e.exit_code());
        }
    }
}
