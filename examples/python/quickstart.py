"""kip from Python in a minute: kernels, KRR, Label Solve and KIP.

    python examples/python/quickstart.py            # digits (embedded), a few seconds
    KIP_DATA_DIR=../shared/data python examples/python/quickstart.py   # + MNIST

Install first (README, "Python"): in a virtual environment,
``pip install maturin && maturin develop --release -m kip-py/Cargo.toml``.
"""

import os
import time

import numpy as np

import kip

# Raw pixels (float32, (n, 8, 8, 1)) and int class ids, the CLI's split.
(x_train, y_train), (x_test, y_test) = kip.load_dataset("digits")
mean, std = x_train.mean(), x_train.std()
xs_train, xs_test = (x_train - mean) / std, (x_test - mean) / std

# A kernel is a spec string; Gram matrices and VJPs take numpy arrays.
ntk = kip.Kernel("fc3-ntk")
k = ntk.gram(xs_test[:5], xs_train[:3])
print(f"{ntk!r}: K(5 test, 3 train) =\n{np.round(k, 3)}")

# KRR with 10 natural images (one per class) against the full training set.
first = np.array([np.flatnonzero(y_train == c)[0] for c in range(10)])
natural = kip.KernelRidge("fc1-ntk").fit(xs_train[first], y_train[first])
print(f"KRR, 10 natural images: {natural.score(xs_test, y_test):.3f}")
full = kip.KernelRidge("fc1-ntk").fit(xs_train, y_train)
print(f"KRR, all {len(y_train)} training images: {full.score(xs_test, y_test):.3f}")

# Label Solve: the best labels for those 10 images, in closed form.
labels = kip.label_solve("fc1-ntk", xs_train[first], xs_train, y_train)
solved = kip.KernelRidge("fc1-ntk").fit(xs_train[first], labels)
print(f"KRR, 10 natural images with solved labels: {solved.score(xs_test, y_test):.3f}")


def show(m):
    if m["step"] % 100 == 0:
        print(f"  step {m['step']:4d}  loss {m['loss']:.4f}  test_acc {m['test_acc']:.3f}")


# KIP: learn 10 images (and their labels) that KRR predicts well from.
t0 = time.time()
run = kip.distill(x_train, y_train, x_test=x_test, y_test=y_test, support=10, steps=300,
                  learn_labels=True, seed=0, callback=show)
print(f"KIP, 10 images, {run.step} steps in {time.time() - t0:.1f} s: "
      f"test accuracy {run.metrics[0]['test_acc']:.3f} -> {run.metrics[-1]['test_acc']:.3f}")
print(f"support images {run.images.shape} (pixel scale), labels {run.y.shape}")

# MNIST when the data is there: the same call on a named dataset.
if os.environ.get("KIP_DATA_DIR"):
    t0 = time.time()
    run = kip.distill(dataset="mnist", support=10, steps=100, target_batch=1000,
                      learn_labels=True, seed=0)
    print(f"MNIST KIP, 10 images, 100 steps in {time.time() - t0:.1f} s: "
          f"test accuracy {run.metrics[0]['test_acc']:.4f} -> {run.metrics[-1]['test_acc']:.4f}")
else:
    print("(set KIP_DATA_DIR to a folder holding mnist/ for the MNIST part)")
