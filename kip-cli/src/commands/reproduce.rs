//! `kip reproduce ROW`: one README results row, from the recipe table.

use std::path::Path;

use clap::Parser;
use kip_meta::Ranks;

use crate::cli::{Cli, ReproduceArgs};
use crate::commands::{default_out, dispatch};
use crate::error::{CliError, Result};
use crate::recipes::{self, percent, Kind, Recipe, RECIPES};

fn names() -> String {
    RECIPES.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
}

/// The rows, or only `row` (an unknown name is a usage error).
fn list(markdown: bool, row: Option<&str>) -> Result<()> {
    let rows: Vec<&Recipe> = match row {
        None => RECIPES.iter().collect(),
        Some(name) => vec![recipes::find(name).ok_or_else(|| unknown_row(name))?],
    };
    if markdown {
        print!("{}", recipes::markdown(&rows));
        return Ok(());
    }
    for r in rows {
        println!(
            "{:<15} paper {} ({}), measured {}, about {} min\n                {} --seed 0",
            r.name,
            percent(r.paper.0),
            r.paper.1,
            percent(r.measured),
            r.minutes,
            r.command()
        );
    }
    Ok(())
}

fn unknown_row(name: &str) -> CliError {
    CliError::Usage(format!("unknown row `{name}`: expected one of {}", names()))
}

/// The run's final test accuracy from its `summary.json`.
fn final_accuracy(out: &Path, kind: Kind) -> Result<f64> {
    let path = out.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    v[kind.summary_key()]
        .as_f64()
        .ok_or_else(|| CliError::Usage(format!("{}: no {}", path.display(), kind.summary_key())))
}

pub fn run(a: ReproduceArgs, ranks: &Ranks) -> Result<i32> {
    if a.list {
        list(a.markdown, a.row.as_deref())?;
        return Ok(0);
    }
    let name = a
        .row
        .ok_or_else(|| CliError::Usage(format!("give a row (or --list): {}", names())))?;
    let r = recipes::find(&name).ok_or_else(|| unknown_row(&name))?;
    let out = a.out.unwrap_or_else(|| default_out(&format!("reproduce-{name}")));
    let seed = a.seed.to_string();
    let mut argv: Vec<String> = ["kip", r.kind.command()].iter().map(|s| s.to_string()).collect();
    argv.extend(r.args.iter().map(|s| s.to_string()));
    argv.extend(["--seed".into(), seed, "--out".into(), out.display().to_string()]);
    if let Some(d) = &a.data_dir {
        argv.extend(["--data-dir".into(), d.display().to_string()]);
    }
    if a.quiet && r.kind == Kind::Distill {
        argv.push("--quiet".into());
    }
    let cli = Cli::try_parse_from(&argv).map_err(|e| CliError::Usage(format!("recipe {name}: {e}")))?;
    let root = ranks.is_root();
    if !a.quiet && root {
        eprintln!(
            "{name}: {} (paper {}), about {} min",
            argv.join(" "),
            percent(r.paper.0),
            r.minutes
        );
    }
    let code = dispatch(cli.command, ranks)?;
    if code != 0 || !root {
        return Ok(code);
    }
    let got = final_accuracy(&out, r.kind)?;
    println!(
        "{name}: paper {} ({}), this run {} (measured {}); run directory {}",
        percent(r.paper.0),
        r.paper.1,
        percent(got),
        percent(r.measured),
        out.display()
    );
    Ok(0)
}
