//! `kip inspect`: what is in a dataset or a run directory.

use serde_json::json;

use crate::cli::InspectArgs;
use crate::error::Result;
use crate::rundir::{RunDir, CONFIG, METRICS, SUMMARY, SUPPORT};

pub fn run(a: InspectArgs) -> Result<i32> {
    let out = match &a.run {
        Some(run) => {
            let dir = RunDir::open(run)?;
            let cfg = dir.read_json(CONFIG)?;
            let summary = dir.read_json(SUMMARY).ok();
            let last = std::fs::read_to_string(dir.file(METRICS)).ok().and_then(|s| {
                s.lines()
                    .last()
                    .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            });
            let support = kip_data::SupportSet::read_npz(&dir.file(SUPPORT)).ok().map(|s| {
                json!({ "images": s.labels.len(), "shape": [s.shape.h, s.shape.w, s.shape.c], "classes": s.class_names.len() })
            });
            json!({ "run": dir.path, "config": cfg, "summary": summary, "last_metrics": last, "support": support })
        }
        None => {
            let split = kip_data::resolve(&a.dataset, a.data_dir.as_deref())?;
            let s = split.train.shape();
            json!({
                "dataset": a.dataset,
                "shape": [s.h, s.w, s.c],
                "train": split.train.len(),
                "test": split.test.len(),
                "classes": split.train.class_names(),
                "train_class_counts": split.train.class_counts(),
                "test_class_counts": split.test.class_counts(),
                "notes": split.notes,
            })
        }
    };
    if a.json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out).expect("JSON serialises"));
    }
    Ok(0)
}
