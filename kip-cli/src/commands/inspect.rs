//! `kip inspect`: what is in a dataset or a run directory.

use kip_meta::{RunDir, RunSummary, SUMMARY};
use serde_json::json;

use crate::cli::InspectArgs;
use crate::error::Result;

pub fn run(a: InspectArgs) -> Result<i32> {
    let out = match &a.run {
        Some(run) => {
            let dir = RunDir::open(run)?;
            let config = dir.read_config()?;
            // A run that has not finished has no summary and may have no
            // support set yet.
            let summary = dir.read_json::<RunSummary>(SUMMARY).ok();
            let last = dir.read_metrics()?.pop();
            let support = dir.read_support().ok().map(|s| {
                json!({ "images": s.labels.len(), "shape": [s.shape.h, s.shape.w, s.shape.c], "classes": s.class_names.len() })
            });
            json!({ "run": dir.path(), "config": config, "summary": summary, "last_metrics": last, "support": support })
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
