//! `kip`: dataset distillation by kernel ridge regression (KIP, Label Solve).

mod cli;
mod commands;
mod error;
mod progress;
mod ranks;
mod recipes;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let world = ranks::World::init();
    let code = match commands::run(cli, &world.ranks) {
        Ok(code) => code,
        // Under MPI rank 0 reports (another rank's failure arrives there
        // with its message); the others only exit non-zero.
        Err(e) if !world.ranks.is_root() => e.exit_code(),
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
    // Finalize MPI (if any) before exiting: exit skips destructors.
    drop(world);
    std::process::exit(code);
}
