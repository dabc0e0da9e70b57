//! `kip`: dataset distillation by kernel ridge regression (KIP, Label Solve).

mod cli;
mod commands;
mod error;
mod progress;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let code = match commands::run(cli) {
        Ok(code) => code,
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
            e.exit_code()
        }
    };
    std::process::exit(code);
}
