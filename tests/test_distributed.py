"""semot.distributed on a real LocalCluster (2 worker processes) against single-process calls."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import semot
from semot.cli.app import main
from semot.distances.sinkhorn import ConvergenceWarning

from conftest import optional_import

distributed = optional_import("distributed")
pd = pytest.importorskip("pandas")

import semot.distributed as sd  # noqa: E402 - needs the optional import above
from semot.distributed import match_blocks  # noqa: E402


def clouds(rng, n_clouds, n=10, d=5, uniform=False, dtype=np.float64):
    pts = rng.normal(size=(n_clouds, n, d)) + 2 * rng.normal(size=(n_clouds, 1, d))
    w = np.ones((n_clouds, n)) if uniform else rng.random((n_clouds, n)) + 0.1
    return semot.PointClouds.from_padded(pts.astype(dtype), w.astype(dtype))


def mixed(rng, n_clouds, n_uniform, dtype=np.float32):
    """Clouds whose first ``n_uniform`` have uniform weights and equal sizes."""
    u = clouds(rng, n_uniform, uniform=True, dtype=dtype)
    g = clouds(rng, n_clouds - n_uniform, dtype=dtype)
    return semot.PointClouds.from_list(list(u) + list(g))


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def worker_pids(client):
    return client.run(os.getpid)


def test_exact_sliced_is_bit_identical(client):
    rng = np.random.default_rng(0)
    # Tiles of 64 x 64 inside the uniform clouds would take the matrix-product path on
    # their own; the whole call takes the merge path, and so must they.
    a, b = mixed(rng, 150, 70), mixed(rng, 130, 70)
    proj = semot.random_projections(5, 32, seed=1)
    want = semot.sliced_wasserstein_cdist(a, b, projections=proj)
    got = sd.sliced_wasserstein_cdist(
        a, b, client=client, projections=proj, block_size=64, progress=False
    )
    assert np.array_equal(got, want)
    got = sd.sliced_wasserstein_cdist(
        a, b, client=client, n_projections=32, seed=1, p=1.5, block_size=(40, 70), progress=False
    )
    assert np.array_equal(
        got, semot.sliced_wasserstein_cdist(a, b, n_projections=32, seed=1, p=1.5)
    )


@pytest.mark.parametrize("method", ["exact", "quantile"])
@pytest.mark.parametrize("uniform", [True, False])
def test_matrix_product_paths_are_bit_identical(client, method, uniform):
    rng = np.random.default_rng(1)
    a = clouds(rng, 300, uniform=uniform, dtype=np.float32)
    b = clouds(rng, 70, uniform=uniform, dtype=np.float32)
    kw = dict(n_projections=16, seed=2, method=method)
    want = semot.sliced_wasserstein_cdist(a, b, **kw)
    got = sd.sliced_wasserstein_cdist(a, b, client=client, block_size=100, progress=False, **kw)
    assert np.array_equal(got, want)


def test_sinkhorn_is_bit_identical_and_warns_once(client):
    rng = np.random.default_rng(2)
    a, b = clouds(rng, 23, n=6), clouds(rng, 17, n=6)
    for debiased in (False, True):
        want = semot.sinkhorn_cdist(a, b, reg=1.0, debiased=debiased)
        got = sd.sinkhorn_cdist(
            a, b, reg=1.0, debiased=debiased, client=client, block_size=8, progress=False
        )
        assert np.array_equal(got, want)
    with pytest.warns(ConvergenceWarning) as single:
        semot.sinkhorn_cdist(a, b, reg=0.01, max_iter=3)
    with pytest.warns(ConvergenceWarning) as dist:
        sd.sinkhorn_cdist(a, b, reg=0.01, max_iter=3, client=client, block_size=8, progress=False)
    assert len(dist) == 1 and str(dist[0].message) == str(single[0].message)


def test_top_k_reduced_on_workers(client):
    rng = np.random.default_rng(3)
    a = clouds(rng, 40)
    base = clouds(rng, 15)
    b = base[np.r_[0:15, 3, 3, 7, 0]]  # repeated clouds: tied distances
    full = semot.sliced_wasserstein_cdist(a, b, n_projections=16, seed=0)
    top = sd.sliced_wasserstein_cdist(
        a, b, client=client, n_projections=16, seed=0, top_k=4, block_size=6, progress=False
    )
    order = np.argsort(full, axis=1, kind="stable")[:, :4]
    assert np.array_equal(top.indices, order)
    assert np.array_equal(top.distances, np.take_along_axis(full, order, 1))
    big = sd.sliced_wasserstein_cdist(
        a, b, client=client, n_projections=16, seed=0, top_k=50, progress=False
    )
    assert big.indices.shape == (40, 19)


def test_npy_output_resumes_skips_done_blocks_and_refuses_other_work(client, tmp_path):
    rng = np.random.default_rng(4)
    a, b = clouds(rng, 50), clouds(rng, 45)
    kw = dict(client=client, n_projections=16, seed=0, block_size=16, progress=False)
    want = semot.sliced_wasserstein_cdist(a, b, n_projections=16, seed=0)
    out = tmp_path / "D.npy"
    got = sd.sliced_wasserstein_cdist(a, b, out=out, **kw)
    assert isinstance(got, np.memmap) and np.array_equal(got, want)
    record_path = tmp_path / "D.npy.semot.json"
    record = json.loads(record_path.read_text())
    assert record["done"] == list(range(12)) and record["n_blocks"] == 12  # 4 x 3 tiles
    # An interrupted run: blocks 0 and 3 are recorded as done, but block 0 holds a marker
    # (damaged since), and the rest is garbage. Block 3 is kept (its checksum matches),
    # block 0 is computed again with a warning, the others as never done.
    mm = np.load(out, mmap_mode="r+")
    mm[:] = -7.0
    mm[:16, :16] = -1.0
    mm[16:32, :16] = want[16:32, :16]
    mm.flush()
    del mm
    record["done"] = [0, 3]
    record_path.write_text(json.dumps(record))
    seen = []
    with pytest.warns(semot.errors.DamagedOutputWarning, match="1 of the 2 blocks"):
        got = sd.sliced_wasserstein_cdist(
            a, b, out=out, **{**kw, "progress": lambda d, t: seen.append(d)}
        )
    assert np.array_equal(got, want)
    assert seen == list(range(2, 13))  # 11 blocks computed: block 3 was not
    with pytest.raises(ValueError, match=r"different computation.*projections"):
        sd.sliced_wasserstein_cdist(a, b, out=out, **{**kw, "seed": 1})
    with pytest.raises(ValueError, match=r"different computation.*shape"):
        sd.sliced_wasserstein_cdist(a[:40], b, out=out, **kw)
    got = sd.sliced_wasserstein_cdist(a, b, out=out, overwrite=True, **kw)
    assert np.array_equal(got, want)
    (tmp_path / "other.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="no record of finished blocks"):
        sd.sliced_wasserstein_cdist(a, b, out=tmp_path / "other.npy", **kw)
    with pytest.raises(ValueError, match=r"\.npy or \.zarr"):
        sd.sliced_wasserstein_cdist(a, b, out=tmp_path / "D.txt", **kw)


def test_zarr_output(client, tmp_path):
    # zarr is optional and in no extra: .npy is the output CI relies on.
    zarr = pytest.importorskip("zarr", reason="zarr is optional (pip install zarr)")
    rng = np.random.default_rng(5)
    a, b = clouds(rng, 30), clouds(rng, 20)
    got = sd.sinkhorn_cdist(
        a, b, reg=0.5, client=client, out=tmp_path / "D.zarr", block_size=8, progress=False
    )
    assert isinstance(got, zarr.Array)
    assert np.array_equal(got[:], semot.sinkhorn_cdist(a, b, reg=0.5))


def test_worker_killed_mid_run_is_recomputed(client):
    rng = np.random.default_rng(6)
    a, b = clouds(rng, 60, n=24, d=8), clouds(rng, 60, n=24, d=8)
    want = semot.sinkhorn_cdist(a, b, reg=2.0, debiased=True)
    before = worker_pids(client)
    killed = []

    def kill_one(done, total):
        if not killed:
            pid = next(iter(before.values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    got = sd.sinkhorn_cdist(
        a, b, reg=2.0, debiased=True, client=client, block_size=10, progress=kill_one
    )
    assert killed and np.array_equal(got, want)
    client.wait_for_workers(2, timeout=30)
    assert killed[0] not in worker_pids(client).values()  # the nanny started a new one


def lost_inputs_case(name):
    """A call of the Dask path and the single-process call it must equal."""
    rng = np.random.default_rng(8)
    if name == "sinkhorn-cdist":
        a, b = clouds(rng, 60, n=24, d=8), clouds(rng, 60, n=24, d=8)
        return (
            lambda **kw: sd.sinkhorn_cdist(a, b, reg=2.0, block_size=10, **kw),
            semot.sinkhorn_cdist(a, b, reg=2.0),
        )
    if name == "match-search":
        a, b = clouds(rng, 60), clouds(rng, 50)
        opts = dict(candidates="centroid", n_candidates=6)
        return lambda **kw: sd.match(a, b, **opts, **kw), semot.match(a, b, **opts)
    a, b = clouds(rng, 40), clouds(rng, 35)
    return lambda **kw: sd.match(a, b, block_size=4, **kw), semot.match(a, b)


@pytest.mark.parametrize("name", ["sinkhorn-cdist", "match", "match-search"])
def test_lost_scattered_inputs_are_sent_again(client, monkeypatch, name):
    # Dask's active memory manager drops extra replicas of scattered data, so the worker that
    # dies may hold the last copy of the clouds: its blocks come back cancelled. Here every
    # input is scattered to one worker only and its holders are killed after the first block.
    run, want = lost_inputs_case(name)
    # The candidate search's row blocks hold KNN_BLOCK_ROWS rows: a few, so that blocks are
    # still pending when the inputs are lost.
    monkeypatch.setattr(match_blocks, "KNN_BLOCK_ROWS", 4)
    shipped = []
    scatter = client.scatter

    def one_copy(data, **kw):
        fut = scatter(data, **{**kw, "broadcast": False})
        shipped.append(fut)
        return fut

    monkeypatch.setattr(client, "scatter", one_copy)
    killed = []
    first = []

    def kill_holders(done, total):
        if done >= 1 and not killed:
            first.extend(shipped)
            pids = worker_pids(client)
            holders = {w for ws in client.who_has(first).values() for w in ws}
            for address in holders:
                os.kill(pids[address], signal.SIGKILL)
                killed.append(pids[address])

    got = run(client=client, progress=kill_holders)
    assert killed and len(shipped) > len(first)  # the inputs were sent again
    if name == "sinkhorn-cdist":
        assert np.array_equal(got, want)
    else:
        pd.testing.assert_frame_equal(got, want)
    client.wait_for_workers(2, timeout=30)


def test_a_cancelled_block_without_reship_is_an_error(client):
    from semot.distributed.blocks import Block
    from semot.distributed.client import run_blocks

    def slow(x):
        time.sleep(2)
        return x

    blocks = [Block(index=0, r0=0, r1=1, c0=0, c1=1)]
    futs = []

    def submit(blk):
        futs.append(client.submit(slow, blk.index, pure=False))
        return futs[-1]

    import threading

    timer = threading.Timer(0.5, lambda: client.cancel(futs))
    timer.start()
    with pytest.raises(RuntimeError, match="block 0 was cancelled"):
        run_blocks(client, blocks, submit, lambda b, r: None, progress=False, desc="t", timeout=10)
    timer.join()


def test_ctrl_c_cancels_blocks_and_the_run_resumes(client, tmp_path):
    rng = np.random.default_rng(7)
    a, b = clouds(rng, 60, n=24, d=8), clouds(rng, 60, n=24, d=8)
    out = tmp_path / "D.npy"

    def interrupt(done, total):
        raise KeyboardInterrupt

    kw = dict(reg=2.0, client=client, out=out, block_size=10)
    with pytest.raises(KeyboardInterrupt):
        sd.sinkhorn_cdist(a, b, progress=interrupt, **kw)
    record = json.loads((tmp_path / "D.npy.semot.json").read_text())
    assert 1 <= len(record["done"]) < 36

    def tasks_left(dask_scheduler):
        return len(dask_scheduler.tasks)  # blocks and the scattered clouds alike

    deadline = time.monotonic() + 10
    while client.run_on_scheduler(tasks_left) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.run_on_scheduler(tasks_left) == 0
    seen = []
    got = sd.sinkhorn_cdist(a, b, progress=lambda d, t: seen.append(d), **kw)
    assert np.array_equal(got, semot.sinkhorn_cdist(a, b, reg=2.0))
    assert seen[0] == len(record["done"]) + 1 and seen[-1] == 36


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_a_clear_error():
    rng = np.random.default_rng(8)
    a = clouds(rng, 5)
    t = time.monotonic()
    with pytest.raises(sd.SchedulerUnavailableError, match="cannot reach the Dask scheduler"):
        sd.sliced_wasserstein_cdist(
            a, a, client=f"tcp://127.0.0.1:{free_port()}", timeout=2, progress=False
        )
    assert time.monotonic() - t < 20


def test_scheduler_that_goes_away_is_a_clear_error_not_a_hang():
    address = f"tcp://127.0.0.1:{free_port()}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sched = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", address.rsplit(":", 1)[1], "--dashboard-address", ":0", "--no-show"],
        **quiet,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
         "--dashboard-address", ":0", "--no-nanny"],
        **quiet,
    )  # fmt: skip
    try:
        rng = np.random.default_rng(9)
        a = clouds(rng, 60, n=24, d=8)

        def kill_scheduler(done, total):
            sched.kill()

        t = time.monotonic()
        with pytest.raises(sd.SchedulerUnavailableError, match="scheduler"):
            sd.sinkhorn_cdist(
                a, a, reg=2.0, client=address, block_size=10, progress=kill_scheduler,
                timeout=8,
            )  # fmt: skip
        assert time.monotonic() - t < 60
    finally:
        for proc in (sched, worker):
            proc.kill()
            proc.wait()


MATCH_CASES = [
    dict(),
    dict(k=3, threshold="auto", margin=0.1),
    dict(assignment="one-to-one", threshold="auto"),
    dict(candidates="quantile-knn", n_candidates=6, threshold="auto"),
    dict(candidates="centroid", n_candidates=6, assignment="one-to-one"),
    dict(candidates="decoder-cosine", n_candidates=6),
    dict(distance="sinkhorn", candidates="centroid", n_candidates=4),
    dict(distance="sinkhorn", k=2),
]


@pytest.mark.parametrize("kw", MATCH_CASES, ids=lambda kw: ",".join(map(str, kw.values())))
def test_match_equals_semot_match(client, kw):
    rng = np.random.default_rng(10)
    shift = 3 * rng.normal(size=(40, 5))
    src = semot.PointClouds.from_padded(
        rng.normal(size=(40, 10, 5)) + shift[:, None], rng.random((40, 10)) + 0.1
    )
    tgt = semot.PointClouds.from_padded(
        rng.normal(size=(35, 10, 5)) + shift[:35, None][::-1], rng.random((35, 10)) + 0.1
    )
    if kw.get("candidates") == "decoder-cosine":
        kw = {**kw, "source_decoder": rng.normal(size=(40, 9)),
              "target_decoder": rng.normal(size=(35, 9))}  # fmt: skip
    want = semot.match(src, tgt, **kw)
    got = sd.match(src, tgt, client=client, block_size=16, progress=False, **kw)
    pd.testing.assert_frame_equal(got, want)


def test_match_checkpoint_resumes(client, tmp_path):
    rng = np.random.default_rng(11)
    a, b = clouds(rng, 30), clouds(rng, 25)
    kw = dict(client=client, block_size=10, checkpoint=tmp_path / "ck", threshold="auto")

    def interrupt(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sd.match(a, b, progress=interrupt, **kw)
    seen = []
    got = sd.match(a, b, progress=lambda d, t: seen.append(d), **kw)
    pd.testing.assert_frame_equal(got, semot.match(a, b, threshold="auto"))
    assert seen[0] >= 3 and seen[-1] == 9
    # Everything done: no cluster needed at all.
    got = sd.match(a, b, **{**kw, "client": "tcp://127.0.0.1:1"})
    pd.testing.assert_frame_equal(got, semot.match(a, b, threshold="auto"))
    with pytest.raises(ValueError, match="different computation"):
        sd.match(a, b, **{**kw, "seed": 3})


def test_match_with_torch_candidate_search(client):
    optional_import("torch")
    rng = np.random.default_rng(12)
    a, b = clouds(rng, 30), clouds(rng, 25)
    kw = dict(candidates="quantile-knn", n_candidates=5)
    got = sd.match(a, b, client=client, device="cpu", progress=False, **kw)
    pd.testing.assert_frame_equal(got, semot.match(a, b, **kw))


def test_argument_errors(client, tmp_path):
    rng = np.random.default_rng(13)
    a = clouds(rng, 5)
    with pytest.raises(TypeError, match="client"):
        sd.sliced_wasserstein_cdist(a, a, client=42, progress=False)
    with pytest.raises(ValueError, match="checkpoint"):
        sd.sliced_wasserstein_cdist(a, a, client=client, checkpoint=tmp_path, progress=False)
    with pytest.raises(ValueError, match="block_size"):
        sd.sliced_wasserstein_cdist(a, a, client=client, block_size=0, progress=False)
    with pytest.raises(ValueError, match="distance"):
        sd.match(a, a, client=client, distance="cosine")
    with pytest.raises(ValueError, match="metric"), pytest.warns(DeprecationWarning):
        sd.match(a, a, client=client, metric="cosine")


BAD_MATCH_ARGS = [
    dict(k="3"),
    dict(k=0),
    dict(n_candidates=2.5, candidates="centroid"),
    dict(assignment="best"),
    dict(distance="w1"),
    dict(distance="sliced", metric="sliced"),
    dict(threshold="high"),
    dict(threshold=[1.0]),
    dict(margin="big"),
    dict(margin=1.5),
    dict(candidates="random"),
    dict(knn_backend="annoy"),
    dict(knn_backend="numpy", device="cpu"),
    dict(n_projections=0),
    dict(reg="0.1"),
    dict(candidates="decoder-cosine"),
]


@pytest.mark.parametrize("kw", BAD_MATCH_ARGS, ids=lambda kw: ",".join(map(repr, kw.values())))
def test_match_and_dask_match_reject_bad_arguments_alike(client, kw):
    rng = np.random.default_rng(16)
    a = clouds(rng, 6)
    with pytest.raises((TypeError, ValueError)) as single:
        semot.match(a, a, **kw)
    with pytest.raises((TypeError, ValueError)) as dask:
        sd.match(a, a, client=client, progress=False, **kw)
    assert type(dask.value) is type(single.value)
    assert str(dask.value) == str(single.value)


def test_smallest_k_ties_and_inf():
    d = np.array([[3.0, 1.0, 1.0, 2.0, 1.0], [np.inf, 0.0, 5.0, 0.0, 0.0]])
    idx, dist = sd.smallest_k(d, 2, col0=10)
    assert idx.tolist() == [[11, 12], [11, 13]] and dist.tolist() == [[1, 1], [0, 0]]
    idx, _ = sd.smallest_k(d, 5)
    assert idx.tolist() == [[1, 2, 4, 3, 0], [1, 3, 4, 2, 0]]


def make_fd(rng, n_features, d=5, n=8):
    c = clouds(rng, n_features, n=n, d=d, dtype=np.float32)
    return semot.FeatureDistributions.from_arrays(
        points=c.points, weights=c.weights, activations=np.ones(c.n_points, np.float32),
        keys=np.zeros(c.n_points), seq=np.zeros(c.n_points, np.int64),
        pos=np.arange(c.n_points), offsets=c.offsets, feature_ids=np.arange(n_features) + 100,
        firing_counts=np.full(n_features, n), activation_sums=np.ones(n_features),
        metadata={"n_tokens": 1000},
    )  # fmt: skip


def test_cli_cdist_and_match_on_a_scheduler(client, tmp_path, capsys):
    rng = np.random.default_rng(14)
    fd = make_fd(rng, 30)
    fd.save(tmp_path / "site")
    address = client.scheduler.address
    base = ["--from", "site", "--to", "site"]
    out = tmp_path / "D.npy"
    args = ["cdist", str(tmp_path / "site"), *base, "--scheduler", address, "--block-size", "8"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    want = semot.sliced_wasserstein_cdist(fd, fd, seed=0)
    assert np.array_equal(np.load(out), want)
    ids = np.load(tmp_path / "D.npy.ids.npz")
    assert ids["source"].tolist() == list(range(100, 130))
    top = tmp_path / "top.npz"
    assert main([*args, "--top-k", "3", "--out", str(top), "--no-progress"]) == 0
    z = np.load(top)
    assert z["indices"].shape == (30, 3) and (z["target"][:, 0] == z["source"]).all()
    assert not (tmp_path / "top.npz.blocks").exists()
    # The default: a cluster inside this process.
    assert main(["cdist", str(tmp_path / "site"), *base, "--metric", "sinkhorn", "--reg",
                 "0.5", "--out", str(tmp_path / "S.npy"), "--no-progress"]) == 0  # fmt: skip
    assert np.array_equal(np.load(tmp_path / "S.npy"), semot.sinkhorn_cdist(fd, fd, reg=0.5))
    m_args = ["match", str(tmp_path / "site"), *base, "--threshold", "auto"]
    assert main([*m_args, "--out", str(tmp_path / "m1.csv")]) == 0
    assert main([*m_args, "--scheduler", address, "--out", str(tmp_path / "m2.csv")]) == 0
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "m1.csv"), pd.read_csv(tmp_path / "m2.csv")
    )
    capsys.readouterr()
    assert main(["cdist", str(tmp_path / "site"), *base, "--out", str(tmp_path / "x.csv")]) == 2
    assert "expected a .npy or .zarr" in capsys.readouterr().err


def test_import_semot_imports_neither_dask_nor_torch():
    code = (
        "import sys, semot, semot.cli.app\n"
        "semot.cli.app.main(['version'])\n"
        "bad = [m for m in ('torch', 'distributed', 'dask') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_warnings_are_not_raised_for_clean_runs(client):
    rng = np.random.default_rng(15)
    a = clouds(rng, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sd.sinkhorn_cdist(a, a, reg=1.0, client=client, progress=False)
