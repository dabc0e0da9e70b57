"""``kip.distill``, ``kip.load_run`` and ``kip.load_dataset``: bitwise the
same run as the ``kip distill`` CLI, arrays in memory vs the named dataset,
the callback, early stop, resume and exceptions from the callback."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

import kip
from kiptest import centred_one_hot, strip_elapsed

CHECKPOINT = "checkpoint.bin"  # kip-meta/src/run_dir.rs: CHECKPOINT
SUPPORT_NPZ = "support.npz"


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_cli(kip_bin, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(kip_bin), "distill", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"kip distill {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def assert_npz_bitwise_equal(p1, p2):
    a, b = np.load(p1), np.load(p2)
    assert sorted(a.files) == sorted(b.files)
    assert {"x", "x_model", "y", "labels"} <= set(a.files)
    for key in a.files:
        va, vb = a[key], b[key]
        assert va.dtype == vb.dtype and va.shape == vb.shape, key
        assert va.tobytes() == vb.tobytes(), f"{key} differs"
        np.testing.assert_array_equal(va, vb)


def assert_run_matches_npz(run: kip.Run, path):
    """The Run's arrays are the run directory's support.npz."""
    z = np.load(path)
    assert run.x.dtype == np.float64
    np.testing.assert_array_equal(run.x, z["x_model"])
    assert run.x.tobytes() == z["x_model"].tobytes()
    np.testing.assert_array_equal(run.y, z["y"])
    np.testing.assert_array_equal(run.labels, z["labels"])
    np.testing.assert_array_equal(run.images, z["x"].astype(np.float64))
    if "class_names_utf8" in z.files:
        assert run.class_names == bytes(z["class_names_utf8"]).decode().split("\n")


def assert_runs_equal(a: kip.Run, b: kip.Run):
    for name in ("x", "y", "images", "labels"):
        va, vb = getattr(a, name), getattr(b, name)
        assert va.shape == vb.shape, name
        assert va.tobytes() == vb.tobytes(), f"Run.{name} differs"
    assert a.class_names == b.class_names
    assert a.step == b.step and a.support == b.support
    assert strip_elapsed(a.metrics) == strip_elapsed(b.metrics)


# ---------------------------------------------------------------- vs CLI


def test_bitwise_equal_to_cli(kip_bin, tmp_path):
    py_dir, cli_dir = tmp_path / "py", tmp_path / "cli"
    run = kip.distill(dataset="digits", support=10, steps=20, seed=3, learn_labels=True, out=py_dir)
    run_cli(kip_bin, "--dataset", "digits", "--support", "10", "--steps", "20", "--seed", "3",
            "--learn-labels", "--out", str(cli_dir), "--quiet")
    assert_npz_bitwise_equal(py_dir / SUPPORT_NPZ, cli_dir / SUPPORT_NPZ)
    assert_run_matches_npz(run, cli_dir / SUPPORT_NPZ)
    assert run.x.shape == (10, 8, 8, 1) and run.y.shape == (10, 10)
    # Same metrics log (but the timings) and the same recorded settings.
    assert strip_elapsed(read_jsonl(py_dir / "metrics.jsonl")) == strip_elapsed(read_jsonl(cli_dir / "metrics.jsonl"))
    assert [m["step"] for m in run.metrics] == list(range(21))
    with open(py_dir / "config.json") as f1, open(cli_dir / "config.json") as f2:
        assert json.load(f1) == json.load(f2)
    # load_run reads the CLI's directory as the same run.
    cli_run = kip.load_run(cli_dir)
    assert_runs_equal(cli_run, run)
    assert cli_run.summary["final_test_acc"] == run.summary["final_test_acc"]
    assert not cli_run.stopped and cli_run.step == 20


def test_bitwise_equal_to_cli_with_many_options(kip_bin, tmp_path):
    """Every option maps to the CLI flag of the same meaning."""
    py_dir, cli_dir = tmp_path / "py", tmp_path / "cli"
    kip.distill(dataset="digits", support=20, steps=15, seed=5, kernel="fc2-ntk,convvec1-nngp",
                lr=0.02, lr_schedule="cosine:0.1", precision="f32", target_batch=200,
                init="noise", init_std=0.5, corrupt=0.1, reg=1e-4, eval_every=5,
                checkpoint_every=4, preprocess="zca", learn_labels=True, augment_support="flip,shift:1",
                out=py_dir)
    run_cli(kip_bin, "--dataset", "digits", "--support", "20", "--steps", "15", "--seed", "5",
            "--kernel", "fc2-ntk,convvec1-nngp", "--lr", "0.02", "--lr-schedule", "cosine:0.1",
            "--precision", "f32", "--target-batch", "200", "--init", "noise", "--init-std", "0.5",
            "--corrupt", "0.1", "--reg", "1e-4", "--eval-every", "5", "--checkpoint-every", "4",
            "--preprocess", "zca", "--learn-labels", "--augment-support", "flip,shift:1",
            "--out", str(cli_dir), "--quiet")
    assert_npz_bitwise_equal(py_dir / SUPPORT_NPZ, cli_dir / SUPPORT_NPZ)
    with open(py_dir / "config.json") as f1, open(cli_dir / "config.json") as f2:
        assert json.load(f1) == json.load(f2)
    assert strip_elapsed(read_jsonl(py_dir / "metrics.jsonl")) == strip_elapsed(read_jsonl(cli_dir / "metrics.jsonl"))


def test_cli_resumes_a_python_run_and_vice_versa(kip_bin, tmp_path):
    straight = kip.distill(dataset="digits", support=10, steps=12, seed=4)
    a = tmp_path / "a"
    kip.distill(dataset="digits", support=10, steps=12, seed=4, out=a, callback=lambda m: m["step"] == 6)
    run_cli(kip_bin, "--resume", str(a), "--steps", "12", "--quiet")
    assert_runs_equal(kip.load_run(a), straight)
    b = tmp_path / "b"
    run_cli(kip_bin, "--dataset", "digits", "--support", "10", "--steps", "6", "--seed", "4",
            "--out", str(b), "--quiet")
    resumed = kip.distill(dataset="digits", support=10, steps=12, seed=4, out=b, resume=True)
    for name in ("x", "y", "images", "labels"):
        assert getattr(resumed, name).tobytes() == getattr(straight, name).tobytes(), name


# ------------------------------------------------------ arrays in memory


@pytest.mark.parametrize("learn_labels", [False, True])
def test_arrays_in_memory_equal_the_named_dataset(digits, learn_labels):
    (xt, yt), (xs, ys) = digits
    assert xt.shape == (1438, 8, 8, 1) and xt.dtype == np.float32
    assert yt.dtype == np.int64 and xs.shape == (359, 8, 8, 1) and ys.shape == (359,)
    mem = kip.distill(xt, yt, x_test=xs, y_test=ys, support=10, steps=20, seed=3, learn_labels=learn_labels)
    named = kip.distill(dataset="digits", support=10, steps=20, seed=3, learn_labels=learn_labels)
    assert mem.x.tobytes() == named.x.tobytes()
    assert mem.y.tobytes() == named.y.tobytes()
    np.testing.assert_array_equal(mem.images, named.images)
    np.testing.assert_array_equal(mem.labels, named.labels)
    assert mem.metrics[-1]["test_acc"] == named.metrics[-1]["test_acc"]
    assert mem.summary["final_test_acc"] == named.summary["final_test_acc"]
    assert strip_elapsed(mem.metrics) == strip_elapsed(named.metrics)


def test_arrays_in_memory_any_layout_and_dtype(digits):
    (xt, yt), (xs, ys) = digits
    ref = kip.distill(xt, yt, x_test=xs, y_test=ys, support=10, steps=5, seed=2)
    # float64 pixels (stored as float32, like kip's loaders): same run.
    r64 = kip.distill(xt.astype(np.float64), yt, x_test=xs.astype(np.float64), y_test=ys,
                      support=10, steps=5, seed=2)
    assert_runs_equal(r64, ref)
    # Grayscale (n, h, w): the same images, results shaped like the input.
    gray = kip.distill(xt[..., 0], yt, x_test=xs[..., 0], y_test=ys, support=10, steps=5, seed=2)
    assert gray.x.shape == (10, 8, 8, 1)  # image runs come back (n, h, w, c)
    assert_runs_equal(gray, ref)
    # Flat points (n, d) with an FC kernel: the same run, flat results.
    flat = kip.distill(xt.reshape(len(xt), -1), yt, x_test=xs.reshape(len(xs), -1), y_test=ys,
                       support=10, steps=5, seed=2)
    assert flat.x.shape == (10, 64) and flat.images.shape == (10, 64)
    np.testing.assert_array_equal(flat.x, ref.x.reshape(10, -1))
    # Fortran-ordered input.
    rf = kip.distill(np.asfortranarray(xt), yt.tolist(), x_test=xs, y_test=ys, support=10, steps=5, seed=2)
    assert_runs_equal(rf, ref)


def test_load_run_of_flat_points_keeps_their_shape(digits, tmp_path):
    """load_run(out) gives the same arrays as the Run distill returned,
    including the (n, d) shape of a run on flat points."""
    (xt, yt), (xs, ys) = digits
    out = tmp_path / "flat"
    run = kip.distill(xt.reshape(len(xt), -1), yt, x_test=xs.reshape(len(xs), -1), y_test=ys,
                      support=10, steps=3, out=out)
    assert run.x.shape == (10, 64)
    loaded = kip.load_run(out)
    assert loaded.x.shape == run.x.shape, f"load_run gives {loaded.x.shape}, distill gave {run.x.shape}"
    assert_runs_equal(loaded, run)


def test_holdout_and_class_names(digits):
    (xt, yt), _ = digits
    run = kip.distill(xt, yt, holdout=300, support=10, steps=3, seed=1,
                      class_names=[f"digit{i}" for i in range(10)])
    assert run.class_names == [f"digit{i}" for i in range(10)]
    assert run.summary["test_size"] == 300
    assert "test_acc" in run.metrics[0]


def test_run_attributes(tmp_path, digits):
    (xt, _), _ = digits
    out = tmp_path / "r"
    run = kip.distill(dataset="digits", support=20, steps=4, seed=0, out=str(out))
    assert isinstance(run.path, pathlib.Path) and run.path == out
    assert run.support == 20 and run.step == 4 and run.stopped is False
    assert run.x.shape == run.images.shape == (20, 8, 8, 1)
    assert run.y.shape == (20, 10) and run.labels.shape == (20,)
    np.testing.assert_array_equal(np.bincount(run.labels), [2] * 10)  # class-balanced
    assert run.class_names == [str(i) for i in range(10)]
    # Fixed labels: the centred one-hot rows of the classes the images come from.
    np.testing.assert_array_equal(run.y, centred_one_hot(run.labels, 10))
    # images: x mapped back to the pixel scale (standard preprocessing).
    xt64 = xt.astype(np.float64)
    np.testing.assert_allclose(run.images, run.x * xt64.std() + xt64.mean(), atol=1e-4)
    assert run.summary["steps"] == 4 and run.summary["support"] == 20
    assert "Run(step=4, support=20, stopped=False" in repr(run)
    for name in ("metrics.jsonl", "config.json", SUPPORT_NPZ, CHECKPOINT):
        assert (out / name).is_file(), name
    # Without out: a temporary directory, no path.
    tmp = kip.distill(dataset="digits", support=10, steps=2)
    assert tmp.path is None and tmp.step == 2


# --------------------------------------------------- callback, stop, resume


def test_callback_receives_metrics_dicts():
    seen = []
    run = kip.distill(dataset="digits", support=10, steps=12, seed=0, eval_every=5,
                      callback=lambda m: seen.append(m))
    assert [m["step"] for m in seen] == list(range(1, 13))
    for m in seen:
        assert isinstance(m, dict)
        assert {"step", "loss", "target_acc", "elapsed_s"} <= set(m)
        assert np.isfinite(m["loss"]) and 0.0 <= m["target_acc"] <= 1.0
    assert "test_acc" in seen[4] and "test_acc" in seen[9] and "test_acc" in seen[-1]
    # The metrics log: step 0 first (the initial evaluation), then one line per step.
    assert run.metrics[0]["step"] == 0 and "test_acc" in run.metrics[0]
    assert [m["step"] for m in run.metrics] == list(range(13))
    assert run.stopped is False
    for got, want in zip(run.metrics[1:], seen):
        assert got.keys() == want.keys()
        for key in got:
            assert got[key] == pytest.approx(want[key], rel=1e-15, abs=0), (got["step"], key)


def test_run_metrics_are_exactly_the_logged_values(tmp_path):
    """Run.metrics, the callback's dicts and metrics.jsonl hold the same floats,
    bit for bit: values read back from the log are correctly rounded."""
    out = tmp_path / "run"
    seen = []
    run = kip.distill(dataset="digits", support=10, steps=12, seed=0, out=out,
                      callback=lambda m: seen.append(m))
    logged = read_jsonl(out / "metrics.jsonl")
    assert strip_elapsed(seen) == strip_elapsed(logged[1:])  # the callback sees the logged values
    assert strip_elapsed(run.metrics) == strip_elapsed(logged)
    with open(out / "summary.json") as f:
        summary = json.load(f)
    assert run.summary == summary


def test_resume_is_bitwise_for_any_learning_rate(tmp_path):
    """Stop + resume is bitwise the straight run whatever the settings' digits:
    a learning rate such as 0.018766376051967598 is read back from config.json
    exactly, so the resumed steps use the same value."""
    lr = 0.018766376051967598
    out = tmp_path / "run"
    kip.distill(dataset="digits", support=10, steps=6, lr=lr, out=out, callback=lambda m: m["step"] == 3)
    with open(out / "config.json") as f:
        assert json.load(f)["kip"]["adam"]["lr"] == lr  # written exactly
    resumed = kip.distill(dataset="digits", support=10, steps=6, out=out, resume=True)
    straight = kip.distill(dataset="digits", support=10, steps=6, lr=lr)
    assert resumed.x.tobytes() == straight.x.tobytes()


def test_stop_from_callback_then_resume_is_bitwise_the_straight_run(tmp_path):
    out = tmp_path / "run"
    steps_seen = []

    def stop_at_5(m):
        steps_seen.append(m["step"])
        return m["step"] == 5

    stopped = kip.distill(dataset="digits", support=10, steps=20, seed=3, out=out, callback=stop_at_5)
    assert steps_seen == [1, 2, 3, 4, 5]
    assert stopped.stopped is True and stopped.step == 5
    assert stopped.summary is None
    assert (out / CHECKPOINT).is_file()
    assert [m["step"] for m in stopped.metrics] == list(range(6))
    loaded = kip.load_run(out)
    assert loaded.stopped is True and loaded.step == 5
    assert_runs_equal(loaded, stopped)
    assert_run_matches_npz(stopped, out / SUPPORT_NPZ)

    resumed = kip.distill(dataset="digits", support=10, steps=20, seed=3, out=out, resume=True)
    straight = kip.distill(dataset="digits", support=10, steps=20, seed=3, out=tmp_path / "straight")
    assert resumed.stopped is False and resumed.step == 20
    assert resumed.x.tobytes() == straight.x.tobytes()
    assert_runs_equal(resumed, straight)
    assert resumed.summary["final_test_acc"] == straight.summary["final_test_acc"]
    assert_runs_equal(kip.load_run(out), straight)


def test_truthy_callback_result_stops():
    run = kip.distill(dataset="digits", support=10, steps=20, callback=lambda m: 1)
    assert run.stopped and run.step == 1
    run = kip.distill(dataset="digits", support=10, steps=3, callback=lambda m: None)
    assert not run.stopped and run.step == 3


class CallbackError(Exception):
    pass


def test_exception_in_callback_propagates_and_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "run"

    def boom(m):
        if m["step"] == 3:
            raise CallbackError("boom at 3")

    with pytest.raises(CallbackError, match="boom at 3"):
        kip.distill(dataset="digits", support=10, steps=20, seed=3, out=out, callback=boom)
    assert (out / CHECKPOINT).is_file()
    loaded = kip.load_run(out)
    assert loaded.stopped and loaded.step == 3
    resumed = kip.distill(dataset="digits", support=10, steps=20, seed=3, out=out, resume=True)
    straight = kip.distill(dataset="digits", support=10, steps=20, seed=3)
    assert_runs_equal(resumed, straight)


def test_keyboard_interrupt_from_callback_propagates(tmp_path):
    out = tmp_path / "run"

    def interrupt(m):
        if m["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        kip.distill(dataset="digits", support=10, steps=20, out=out, callback=interrupt)
    assert (out / CHECKPOINT).is_file()
    assert kip.load_run(out).step == 2


def test_resume_of_an_arrays_run_needs_the_arrays(digits, tmp_path):
    (xt, yt), (xs, ys) = digits
    out = tmp_path / "mem"
    kip.distill(xt, yt, x_test=xs, y_test=ys, support=10, steps=10, seed=3, out=out,
                callback=lambda m: m["step"] == 4)
    with pytest.raises(ValueError, match="in memory"):
        kip.distill(dataset="digits", support=10, steps=10, out=out, resume=True)
    with pytest.raises(ValueError, match="no longer matches"):
        kip.distill(xt[:500], yt[:500], x_test=xs, y_test=ys, support=10, steps=10, out=out, resume=True)
    resumed = kip.distill(xt, yt, x_test=xs, y_test=ys, support=10, steps=10, out=out, resume=True)
    straight = kip.distill(xt, yt, x_test=xs, y_test=ys, support=10, steps=10, seed=3)
    assert_runs_equal(resumed, straight)


def test_resume_extends_a_finished_run(tmp_path):
    out = tmp_path / "run"
    kip.distill(dataset="digits", support=10, steps=8, seed=6, out=out)
    more = kip.distill(dataset="digits", support=10, steps=14, seed=6, out=out, resume=True)
    assert more.step == 14 and not more.stopped
    # With lr_schedule=constant the trajectory is bitwise the 14-step run's
    # (the metrics differ: the finished 8-step run evaluated at step 8).
    straight = kip.distill(dataset="digits", support=10, steps=14, seed=6)
    for name in ("x", "y", "images", "labels"):
        assert getattr(more, name).tobytes() == getattr(straight, name).tobytes(), name
    assert more.metrics[-1]["test_acc"] == straight.metrics[-1]["test_acc"]


def test_out_may_be_an_existing_empty_folder(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    run = kip.distill(dataset="digits", support=10, steps=2, out=out)
    assert run.path == out and (out / SUPPORT_NPZ).is_file()
    assert os.path.isfile(out / "config.json")


def test_keep_best_matches_the_cli_and_reports_the_chosen_set(kip_bin, tmp_path):
    """``keep_best="val"`` is ``--keep-best val``: the same best/ folder, the
    summary's ``best`` is the first evaluation with the top validation
    accuracy, and ``load_run`` reads best/ as a run."""
    opts = dict(dataset="digits", support=10, val=300, eval_every=5, lr=0.5, steps=40)
    py_dir, cli_dir = tmp_path / "py", tmp_path / "cli"
    run = kip.distill(**opts, keep_best="val", out=py_dir)
    run_cli(kip_bin, "--dataset", "digits", "--support", "10", "--val", "300", "--eval-every", "5",
            "--lr", "0.5", "--steps", "40", "--keep-best", "val", "--out", str(cli_dir), "--quiet")
    assert_npz_bitwise_equal(py_dir / "best" / SUPPORT_NPZ, cli_dir / "best" / SUPPORT_NPZ)
    evals = [m for m in run.metrics if m.get("val_acc") is not None]
    top = max(m["val_acc"] for m in evals)
    chosen = next(m for m in evals if m["val_acc"] == top)
    best = run.summary["best"]
    assert (best["step"], best["val_acc"], best["test_acc"]) == (chosen["step"], top, chosen["test_acc"])
    assert kip.load_run(py_dir / "best").x.shape == run.x.shape
    with pytest.raises(ValueError, match="keep_best"):
        kip.distill(**opts, keep_best="test")
    with pytest.raises(ValueError, match="keep_best"):
        kip.distill(dataset="digits", support=10, steps=2, keep_best="val")
