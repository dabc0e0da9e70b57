"""Time `kip.Kernel.gram` from Python at the Rust `gram` bench's shape
(5000 x 784 against 100 x 784, float64), to compare with

    cargo bench -p kip-benches --bench gram -- 'gram/fc1-ntk/5000x100x784'

(the Rust bench reads column-major matrices, i.e. Fortran-ordered arrays).
Prints the median of repeated calls for each memory layout and dtype.

    python kip-py/benches/gram_overhead.py [SPEC ...]
"""

import statistics
import sys
import time

import numpy as np

import kip


def median_ms(f, reps=41, warm=5):
    for _ in range(warm):
        f()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    specs = sys.argv[1:] or ["fc1-ntk", "fc3-ntk"]
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5000, 784))
    b = rng.standard_normal((100, 784))
    variants = {
        "float64 Fortran order (the Rust bench's layout)": (np.asfortranarray(a), np.asfortranarray(b)),
        "float64 C order": (a, b),
        "float32 C order (widened: one copy)": (a.astype(np.float32), b.astype(np.float32)),
    }
    for spec in specs:
        k = kip.Kernel(spec)
        for name, (x1, x2) in variants.items():
            ms = median_ms(lambda: k.gram(x1, x2))
            print(f"{spec} gram 5000x784 vs 100x784, {name}: {ms:.2f} ms")


if __name__ == "__main__":
    main()
