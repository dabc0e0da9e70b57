//! The results rows of the README as runnable recipes: one table, read by
//! `kip reproduce` and printed into the README (a test keeps the two equal).

/// What a recipe runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `kip distill …`; the figure is `summary.json`'s `final_test_acc`.
    Distill,
    /// `kip label-solve …`; the figure is `summary.json`'s `test_acc_after`.
    LabelSolve,
}

impl Kind {
    /// The subcommand.
    pub fn command(self) -> &'static str {
        match self {
            Kind::Distill => "distill",
            Kind::LabelSolve => "label-solve",
        }
    }

    /// The key of the final test accuracy in the run's `summary.json`.
    pub fn summary_key(self) -> &'static str {
        match self {
            Kind::Distill => "final_test_acc",
            Kind::LabelSolve => "test_acc_after",
        }
    }
}

/// One results row.
#[derive(Clone, Copy, Debug)]
pub struct Recipe {
    /// Row name (`kip reproduce NAME`).
    pub name: &'static str,
    /// What it runs.
    pub kind: Kind,
    /// The figure it is compared with (test accuracy) and where it is from.
    pub paper: (f64, &'static str),
    /// The flags after the subcommand.
    pub args: &'static [&'static str],
    /// When not empty, the flags of a `kip transfer RUN …` run on the
    /// finished run; the row's figure is then that transfer's mean test
    /// accuracy of the distilled set (`transfer_dc_test.json`, `kip.mean`).
    pub transfer: &'static [&'static str],
    /// Expected wall time on a 2-core machine of this class, minutes.
    pub minutes: f64,
    /// The test accuracy we measured with exactly this recipe and seed 0.
    pub measured: f64,
}

/// The rows, in README order.
pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "mnist-fc-10",
        kind: Kind::Distill,
        paper: (0.855, "paper, KIP FC"),
        args: &[
            "--dataset",
            "mnist",
            "--support",
            "10",
            "--learn-labels",
            "--steps",
            "2000",
        ],
        transfer: &[],
        minutes: 1.0,
        measured: 0.8996,
    },
    Recipe {
        name: "mnist-fc-100",
        kind: Kind::Distill,
        paper: (0.972, "paper, KIP FC"),
        args: &[
            "--dataset",
            "mnist",
            "--support",
            "100",
            "--learn-labels",
            "--steps",
            "10000",
            "--lr",
            "0.04",
            "--eval-every",
            "500",
        ],
        transfer: &[],
        minutes: 10.0,
        measured: 0.9733,
    },
    Recipe {
        name: "mnist-fc-500",
        kind: Kind::Distill,
        paper: (0.984, "paper, KIP FC"),
        args: &[
            "--dataset",
            "mnist",
            "--support",
            "500",
            "--kernel",
            "fc3-ntk",
            "--learn-labels",
            "--lr",
            "0.04",
            "--lr-schedule",
            "cosine",
            "--steps",
            "6000",
            "--eval-every",
            "500",
        ],
        transfer: &[],
        minutes: 39.0,
        measured: 0.9852,
    },
    Recipe {
        name: "cifar10-fc-10",
        kind: Kind::Distill,
        paper: (0.405, "paper, KIP FC"),
        args: &[
            "--dataset",
            "cifar10",
            "--holdout",
            "10000",
            "--val",
            "5000",
            "--support",
            "10",
            "--learn-labels",
            "--steps",
            "3000",
            "--lr",
            "0.04",
            "--lr-schedule",
            "cosine",
            "--augment",
            "flip",
            "--eval-every",
            "500",
        ],
        transfer: &[],
        minutes: 3.0,
        measured: 0.4107,
    },
    Recipe {
        name: "cifar10-fc-100",
        kind: Kind::Distill,
        paper: (0.531, "paper, KIP FC"),
        args: &[
            "--dataset",
            "cifar10",
            "--holdout",
            "10000",
            "--val",
            "5000",
            "--support",
            "100",
            "--learn-labels",
            "--steps",
            "3000",
            "--lr",
            "0.04",
            "--lr-schedule",
            "cosine",
            "--augment",
            "flip",
            "--eval-every",
            "500",
        ],
        transfer: &[],
        minutes: 5.5,
        measured: 0.5115,
    },
    Recipe {
        name: "cifar10-fc-500",
        kind: Kind::Distill,
        paper: (0.586, "paper, KIP FC"),
        args: &[
            "--dataset",
            "cifar10",
            "--holdout",
            "10000",
            "--val",
            "5000",
            "--support",
            "500",
            "--learn-labels",
            "--steps",
            "1000",
            "--lr",
            "0.04",
            "--lr-schedule",
            "cosine",
            "--augment",
            "flip",
            "--eval-every",
            "500",
        ],
        transfer: &[],
        minutes: 8.0,
        measured: 0.5330,
    },
    Recipe {
        name: "cifar10-ls-500",
        kind: Kind::LabelSolve,
        paper: (0.4699, "authors' notebook, official test set"),
        args: &["--dataset", "cifar10", "--holdout", "10000", "--support", "500"],
        transfer: &[],
        minutes: 3.0,
        measured: 0.4606,
    },
    Recipe {
        name: "cifar10-rfconv-10",
        kind: Kind::Distill,
        paper: (0.536, "RFAD (Loo et al. 2022), finite nets, official test set"),
        args: &[
            "--dataset",
            "cifar10",
            "--holdout",
            "10000",
            "--val",
            "2000",
            "--preprocess",
            "zca",
            "--kernel",
            "rf-conv:layers=CRPCRPCRPFD,channels=64,models=4",
            "--eval-kernel",
            "rf-conv:layers=CRPCRPCRPFD,channels=256,models=16",
            "--support",
            "10",
            "--target-batch",
            "1000",
            "--learn-labels",
            "--lr",
            "0.02",
            "--lr-schedule",
            "cosine",
            "--steps",
            "600",
            "--eval-every",
            "0",
        ],
        transfer: &[],
        minutes: 35.0,
        measured: 0.4573,
    },
    Recipe {
        name: "cifar10-rfconv-100",
        kind: Kind::Distill,
        paper: (0.663, "RFAD (Loo et al. 2022), finite nets, official test set"),
        args: &[
            "--dataset",
            "cifar10",
            "--holdout",
            "10000",
            "--val",
            "2000",
            "--preprocess",
            "zca",
            "--kernel",
            "rf-conv:layers=CRPCRPCRPFD,channels=64,models=4",
            "--eval-kernel",
            "rf-conv:layers=CRPCRPCRPFD,channels=256,models=16",
            "--support",
            "100",
            "--target-batch",
            "1000",
            "--learn-labels",
            "--lr",
            "0.02",
            "--lr-schedule",
            "cosine",
            "--steps",
            "1200",
            "--eval-every",
            "0",
        ],
        transfer: &[],
        minutes: 55.0,
        measured: 0.6258,
    },
    Recipe {
        name: "cifar10-rfconv-10-dc",
        kind: Kind::Distill,
        paper: (0.44, "MTT on DC-BENCH, standard protocol"),
        args: &[
            "--dataset",
            "cifar10",
            "--holdout",
            "10000",
            "--val",
            "2000",
            "--preprocess",
            "zca",
            "--kernel",
            "rf-conv:layers=CRPCRPCRPFD,channels=64,models=4",
            "--support",
            "10",
            "--target-batch",
            "1000",
            "--lr",
            "0.02",
            "--lr-schedule",
            "cosine",
            "--steps",
            "600",
            "--eval-every",
            "0",
        ],
        transfer: &["--protocol", "dc", "--runs", "5"],
        minutes: 45.0,
        measured: 0.3271,
    },
    Recipe {
        name: "cifar10-rfconv-100-dc",
        kind: Kind::Distill,
        paper: (0.637, "MTT on DC-BENCH, standard protocol"),
        args: &[
            "--dataset",
            "cifar10",
            "--holdout",
            "10000",
            "--val",
            "2000",
            "--preprocess",
            "zca",
            "--kernel",
            "rf-conv:layers=CRPCRPCRPFD,channels=64,models=4",
            "--support",
            "100",
            "--target-batch",
            "1000",
            "--lr",
            "0.02",
            "--lr-schedule",
            "cosine",
            "--steps",
            "1200",
            "--eval-every",
            "0",
        ],
        transfer: &["--protocol", "dc", "--runs", "5"],
        minutes: 120.0,
        measured: 0.5013,
    },
];

/// The recipe called `name`.
pub fn find(name: &str) -> Option<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name)
}

/// `0.8996` → `89.96 %`.
pub fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.2} %", v * 100.0)
    } else {
        "—".into()
    }
}

impl Recipe {
    /// The full command line, with the follow-up transfer if any, and
    /// `--seed S` on each command when `seed` is given.
    pub fn command_line(&self, seed: Option<u64>) -> String {
        let seed = seed.map(|s| format!(" --seed {s}")).unwrap_or_default();
        let main = format!("kip {} {}{seed}", self.kind.command(), self.args.join(" "));
        if self.transfer.is_empty() {
            main
        } else {
            format!("{main}; kip transfer RUN {}{seed}", self.transfer.join(" "))
        }
    }
}

/// The README's table of recipes `rows` (what `kip reproduce --list
/// --markdown` prints, of every row).
pub fn markdown(rows: &[&Recipe]) -> String {
    let mut s = String::from("| row | paper | measured (seed 0) | expected time | command |\n|---|---|---|---|---|\n");
    for r in rows {
        s.push_str(&format!(
            "| `{}` | {} ({}) | {} | {} min | `{}` |\n",
            r.name,
            percent(r.paper.0),
            r.paper.1,
            percent(r.measured),
            r.minutes,
            r.command_line(None)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_holds_the_recipe_table() {
        let readme = include_str!("../../README.md");
        let table = markdown(&RECIPES.iter().collect::<Vec<_>>());
        assert!(
            readme.contains(&table),
            "README.md's reproduce table differs from the recipe table; paste this (kip reproduce --list --markdown):\n{table}"
        );
    }

    #[test]
    fn every_recipe_parses_as_its_command() {
        use clap::Parser;
        for r in RECIPES {
            let argv = ["kip", r.kind.command()].into_iter().chain(r.args.iter().copied());
            crate::cli::Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{}: {e}", r.name));
            if !r.transfer.is_empty() {
                let argv = ["kip", "transfer", "RUN"].into_iter().chain(r.transfer.iter().copied());
                crate::cli::Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{} transfer: {e}", r.name));
            }
            assert!(find(r.name).is_some());
        }
        let mut names: Vec<&str> = RECIPES.iter().map(|r| r.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), RECIPES.len(), "duplicate row names");
    }
}
