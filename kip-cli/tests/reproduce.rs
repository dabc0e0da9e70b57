//! `kip reproduce`: the recipe list needs no data; bad rows are usage
//! errors that list the rows.

mod common;

use common::*;

#[test]
fn the_list_needs_no_data_and_names_every_row() {
    let t = tempdir();
    let out = kip_ok(t.path(), &["reproduce", "--list"]);
    for row in [
        "mnist-fc-10",
        "mnist-fc-100",
        "mnist-fc-500",
        "cifar10-fc-10",
        "cifar10-fc-100",
        "cifar10-fc-500",
        "cifar10-ls-500",
        "cifar10-rfconv-10-dc",
        "cifar10-rfconv-100-dc",
    ] {
        assert!(out.contains(row), "{row} missing:\n{out}");
    }
    assert!(
        out.contains("paper 97.20 %") && out.contains("kip distill --dataset mnist"),
        "{out}"
    );
    let md = kip_ok(t.path(), &["reproduce", "--list", "--markdown"]);
    assert!(md.starts_with("| row | paper |"), "{md}");
}

#[test]
fn unknown_or_missing_rows_are_usage_errors() {
    let t = tempdir();
    for args in [&["reproduce", "mnist-fc-7"][..], &["reproduce"][..]] {
        let r = kip(t.path(), args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("mnist-fc-100"), "{args:?}: {}", r.stderr);
    }
    // A row whose data is missing fails before writing anything.
    let r = kip(
        t.path(),
        &[
            "reproduce",
            "mnist-fc-10",
            "--data-dir",
            &join(t.path(), "nowhere"),
            "--out",
            &join(t.path(), "o"),
        ],
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(files_in(&p(t.path(), "o")).is_empty());
}

#[test]
fn the_list_of_one_row_shows_that_row_only() {
    let t = tempdir();
    let out = kip_ok(t.path(), &["reproduce", "--list", "mnist-fc-100"]);
    assert!(out.contains("mnist-fc-100") && out.contains("--support 100"), "{out}");
    for other in ["mnist-fc-10 ", "mnist-fc-500", "cifar10-fc-100"] {
        assert!(!out.contains(other), "{other} listed:\n{out}");
    }
    let md = kip_ok(t.path(), &["reproduce", "--list", "--markdown", "mnist-fc-100"]);
    assert_eq!(md.lines().count(), 3, "{md}");
    // An unknown row is a usage error that lists the known ones.
    let r = kip(t.path(), &["reproduce", "--list", "mnist-fc-7"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("mnist-fc-7") && r.stderr.contains("mnist-fc-100"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_standard_protocol_row_lists_its_distillation_and_its_transfer() {
    let t = tempdir();
    let out = kip_ok(t.path(), &["reproduce", "--list", "cifar10-rfconv-100-dc"]);
    let line = out.lines().nth(1).unwrap_or_default();
    assert!(
        line.contains("kip distill --dataset cifar10")
            && line.contains("--seed 0; kip transfer RUN --protocol dc --runs 5 --seed 0"),
        "{out}"
    );
}
