"""The kernels release the GIL while they compute: another Python thread
keeps running during a long ``Kernel.gram`` (and ``kip.distill``).

How: the main thread spins, noting the time about every millisecond, while
a worker thread makes the call, noting the time just before and just after
it. A thread that holds the GIL can still lose it for up to one switch
interval (``sys.getswitchinterval()``, 5 ms) around the call, between
reading the clock and entering or leaving the native code, so only the
main thread's progress well inside the call counts: without a GIL release
there is none at all (a ``sorted()`` of a large list, which holds the GIL,
is the control); with it, the main thread runs throughout. Each call is
sized from a timed trial run to last about half a second.
"""

from __future__ import annotations

import random
import sys
import threading
import time

import numpy as np
import pytest

import kip


def margin() -> float:
    """Time at each end of the call not counted: several switch intervals
    (the worker may lose and regain the GIL more than once around the call)."""
    return max(0.05, 10 * sys.getswitchinterval())


TARGET_S = 0.5


def progress_inside(work) -> tuple[int, float]:
    """(main-thread time stamps strictly inside ``work()``'s run, less
    ``margin()`` at each end; the run's duration in s)."""
    stamps: list[float] = []
    span: dict[str, float] = {}
    done = threading.Event()

    def worker():
        span["start"] = time.perf_counter()
        work()
        span["end"] = time.perf_counter()
        done.set()

    t = threading.Thread(target=worker)
    last = time.perf_counter()
    t.start()
    while not done.is_set():
        now = time.perf_counter()
        if now - last >= 0.001:
            stamps.append(now)
            last = now
    t.join()
    lo, hi = span["start"] + margin(), span["end"] - margin()
    return sum(lo < s < hi for s in stamps), span["end"] - span["start"]


def sized(build, base: int, exponent: float, limit: int):
    """``build(size)`` with ``size`` scaled from a timed ``build(base)()`` so
    that the call lasts about TARGET_S (cost ~ size**exponent), at most ``limit``."""
    trial = build(base)
    t0 = time.perf_counter()
    trial()
    elapsed = max(time.perf_counter() - t0, 1e-4)
    size = int(base * (TARGET_S / elapsed) ** (1.0 / exponent))
    return build(min(max(size, base), limit))


def check_releases(work, what: str):
    inside, duration = progress_inside(work)
    if duration < 2 * margin() + 0.1:
        pytest.skip(f"{what} took only {duration:.3f} s here: too short to tell")
    assert inside >= 3, (
        f"the main thread made no progress during {what} ({inside} stamps in "
        f"{duration:.3f} s): the GIL is not released"
    )


def test_method_detects_a_call_that_holds_the_gil():
    """Control: sorted() holds the GIL throughout; the method must see it."""
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        pytest.skip("free-threaded interpreter: no GIL to hold")
    def build(n):
        rng = random.Random(0)
        data = [rng.random() for _ in range(n)]
        return lambda: sorted(data)

    inside, duration = progress_inside(sized(build, 200_000, 1.1, 2_000_000))
    if duration < 2 * margin() + 0.1:
        pytest.skip(f"sorted() took only {duration:.3f} s here")
    assert inside == 0, f"{inside} main-thread stamps during sorted(): the method is not sound"


def test_gram_releases_the_gil():
    def build(n):
        x = np.random.default_rng(41).standard_normal((n, 500))
        k = kip.Kernel("fc3-ntk")
        return lambda: k.gram(x, x)

    check_releases(sized(build, 800, 2.0, 8000), "Kernel.gram")


def test_conv_gram_sym_releases_the_gil():
    def build(n):
        x = np.random.default_rng(42).standard_normal((n, 8, 8, 1))
        k = kip.Kernel("convnet1-ntk")
        return lambda: k.gram_sym(x)

    check_releases(sized(build, 40, 2.0, 1000), "Kernel.gram_sym (conv)")


def test_distill_releases_the_gil():
    def build(steps):
        return lambda: kip.distill(dataset="digits", support=10, steps=steps, seed=0)

    check_releases(sized(build, 20, 1.0, 150), "kip.distill")
