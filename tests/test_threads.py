"""Concurrency contract: the GIL is released, Ctrl-C interrupts, forked children work."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

import semot


def big_problem(n_clouds: int = 400, n: int = 24, d: int = 16):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(n_clouds, n, d))
    w = rng.random((n_clouds, n)) + 0.1  # general weights: the merge path, not a matmul
    return semot.PointClouds.from_padded(pts, w)


def test_gil_released_during_bulk_call():
    clouds = big_problem()
    ticks = 0
    done = threading.Event()

    def work() -> None:
        semot.sliced_wasserstein_pdist(clouds, n_projections=64, seed=0, n_threads=1)
        done.set()

    t = threading.Thread(target=work)
    start = time.perf_counter()
    t.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    elapsed = time.perf_counter() - start
    # The main thread kept running Python code while the call was in Rust.
    assert elapsed > 0.05, "problem too small to observe the GIL"
    assert ticks > 10


def test_concurrent_calls_from_threads_agree():
    clouds = big_problem(80)
    want = semot.sliced_wasserstein_pdist(clouds, n_projections=16, seed=1)
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(semot.sliced_wasserstein_pdist(clouds, n_projections=16, seed=1))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 4
    for r in results:
        np.testing.assert_array_equal(r, want)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_interrupts_a_long_call():
    clouds = big_problem(1500, n=32)
    # A process started in the background by a non-interactive shell inherits SIGINT as
    # ignored, and Python then installs no KeyboardInterrupt handler: install it here.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
        start = time.perf_counter()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            semot.sliced_wasserstein_pdist(clouds, n_projections=64, seed=0, n_threads=2)
        assert time.perf_counter() - start < 20
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_bulk_call_in_forked_child():
    clouds = big_problem(60)
    # Warm the thread pools in the parent first: the child must not reuse them.
    want = semot.sliced_wasserstein_pdist(clouds, n_projections=16, seed=2, n_threads=2)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            got = semot.sliced_wasserstein_pdist(clouds, n_projections=16, seed=2, n_threads=2)
            ok = np.array_equal(got, want)
            got = semot.sliced_wasserstein_pdist(clouds, n_projections=16, seed=2)
            ok = ok and np.array_equal(got, want)
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.time() + 60
    while time.time() < deadline:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the forked child hung")
    assert os.read(r, 1) == b"1"
