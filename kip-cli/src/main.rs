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
        if n == 0 {
            eprintln!("error: --threads 0: expected >= 1 (omit --threads to use all cores)");
            std::process::exit(2);
        }
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
            eprintln!("error: --threads {n}: {e}");
            std::process::exit(2);
        }
    }
    match commands::run(cli.command) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let first = e.to_string();
            eprintln!("error: {first}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                // Wrappers often repeat their source's text: print only new details.
                let text = s.to_string();
                if !first.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                source = s.source();
            }
            std::process::exit(e.exit_code());
        }
    }
}
