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
            "{:<15} paper {} ({}), measured {}, about {} min\n                {}",
            r.name,
            percent(r.paper.0),
            r.paper.1,
            percent(r.measured),
            r.minutes,
            r.command_line(Some(0))
        );
    }
    Ok(())
}

fn unknown_row(name: &str) -> CliError {
    CliError::Usage(format!("unknown row `{name}`: expected one of {}", names()))
}

/// The row's figure: the run's test accuracy from its `summary.json` (of
/// the set chosen on validation for a run with `--keep-best val`, else of
/// the final set), or, for a row with a follow-up transfer, the distilled
/// set's mean test accuracy from `transfer_dc_test.json`.
fn final_accuracy(out: &Path, r: &Recipe) -> Result<f64> {
    let read = |file: &str| -> Result<(std::path::PathBuf, serde_json::Value)> {
        let path = out.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
        let v = serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
        Ok((path, v))
    };
    let (path, v, keys) = if r.transfer.is_empty() {
        let (path, v) = read("summary.json")?;
        // A run with --keep-best val reports the set chosen on validation.
        let keys = if v["best"].is_object() {
            vec!["best", "test_acc"]
        } else {
            vec![r.kind.summary_key()]
        };
        (path, v, keys)
    } else {
        let (path, v) = read("transfer_dc_test.json")?;
        (path, v, vec!["kip", "mean"])
    };
    keys.iter()
        .fold(&v, |v, k| &v[*k])
        .as_f64()
        .ok_or_else(|| CliError::Usage(format!("{}: no {}", path.display(), keys.join("."))))
}

/// Parse and run one command line of a recipe.
fn dispatch_line(name: &str, argv: &[String], quiet: bool, root: bool, ranks: &Ranks, r: &Recipe) -> Result<i32> {
    let cli = Cli::try_parse_from(argv).map_err(|e| CliError::Usage(format!("recipe {name}: {e}")))?;
    if !quiet && root {
        eprintln!(
            "{name}: {} (paper {}), about {} min",
            argv.join(" "),
            percent(r.paper.0),
            r.minutes
        );
    }
    dispatch(cli.command, ranks)
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
    let root = ranks.is_root();
    let code = dispatch_line(&name, &argv, a.quiet, root, ranks, r)?;
    if code != 0 || !root {
        return Ok(code);
    }
    if !r.transfer.is_empty() {
        let mut argv: Vec<String> = ["kip", "transfer"].iter().map(|s| s.to_string()).collect();
        argv.push(out.display().to_string());
        argv.extend(r.transfer.iter().map(|s| s.to_string()));
        argv.extend(["--seed".into(), a.seed.to_string()]);
        if let Some(d) = &a.data_dir {
            argv.extend(["--data-dir".into(), d.display().to_string()]);
        }
        let code = dispatch_line(&name, &argv, a.quiet, root, ranks, r)?;
        if code != 0 {
            return Ok(code);
        }
    }
    let got = final_accuracy(&out, r)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_with_a_transfer_reports_the_transfer_mean_not_the_kernel_accuracy() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("summary.json"), r#"{"final_test_acc": 0.62}"#).unwrap();
        std::fs::write(
            dir.path().join("transfer_dc_test.json"),
            r#"{"kip": {"mean": 0.49, "std": 0.01}, "natural": {"mean": 0.32}}"#,
        )
        .unwrap();
        let dc = recipes::find("cifar10-rfconv-100-dc").unwrap();
        let krr = recipes::find("cifar10-rfconv-100").unwrap();
        assert_eq!(final_accuracy(dir.path(), dc).unwrap(), 0.49);
        assert_eq!(final_accuracy(dir.path(), krr).unwrap(), 0.62);
        std::fs::write(
            dir.path().join("summary.json"),
            r#"{"final_test_acc": 0.62, "best": {"step": 300, "val_acc": 0.6, "test_acc": 0.63}}"#,
        )
        .unwrap();
        assert_eq!(final_accuracy(dir.path(), krr).unwrap(), 0.63, "the set chosen on val");
        std::fs::remove_file(dir.path().join("transfer_dc_test.json")).unwrap();
        let e = final_accuracy(dir.path(), dc).unwrap_err().to_string();
        assert!(e.contains("transfer_dc_test.json"), "{e}");
    }
}
