"""The torch kernels and the torch candidate search against the CPU path (CPU, CUDA if present)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import semot
from semot.matching.search import candidate_pairs, knn_cosine, knn_euclidean

from conftest import optional_import

torch = optional_import("torch")
pd = pytest.importorskip("pandas")

from semot.distances import torch_kernels as tb  # noqa: E402 - needs the optional import above

CUDA = torch.cuda.is_available()
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not CUDA, reason="torch.cuda.is_available() is False: no GPU"),
    ),
]


def ragged(rng, n_clouds, d, dtype, max_size=40):
    """Clouds of 1..max_size points, some weights zero, offsets far from the origin."""
    out = []
    for _ in range(n_clouds):
        n = int(rng.integers(1, max_size + 1))
        w = rng.random(n) * (rng.random(n) > 0.2)
        w[0] += 0.5
        out.append(((rng.normal(size=(n, d)) + 5 * rng.normal(size=d)).astype(dtype), w))
    return semot.PointClouds.from_list(out, dtype=dtype)


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1, 2, 3])
def test_embedding_equals_rust(device, dtype, p):
    rng = np.random.default_rng(0)
    c = ragged(rng, 70, 7, dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for q in (1, 5, 32):
        want = semot.sliced_quantile_embedding(c, n_projections=20, seed=1, n_quantiles=q, p=p)
        got = tb.sliced_quantile_embedding(
            c, n_projections=20, seed=1, n_quantiles=q, p=p, device=device, batch_size=16
        )
        assert got.dtype == want.dtype and got.shape == want.shape
        assert rel(got, want) < tol, q


@pytest.mark.parametrize("device", DEVICES)
def test_uniform_clouds_of_q_points_and_defaults(device):
    rng = np.random.default_rng(1)
    c = semot.PointClouds.from_padded(rng.normal(size=(30, 16, 4)))
    want = semot.sliced_quantile_embedding(c, seed=0, n_projections=8)
    got = tb.sliced_quantile_embedding(c, seed=0, n_projections=8, device=device)
    assert rel(got, want) < 1e-12


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1, 2])
def test_quantile_cdist_equals_rust(device, dtype, p):
    rng = np.random.default_rng(2)
    a, b = ragged(rng, 50, 6, dtype), ragged(rng, 40, 6, dtype)
    want = semot.sliced_wasserstein_cdist(a, b, method="quantile", seed=3, n_projections=32, p=p)
    got = tb.quantile_cdist(a, b, seed=3, n_projections=32, p=p, device=device)
    assert got.dtype == np.float64 and got.shape == (50, 40)
    assert rel(got, want) < (1e-5 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_knn_equals_cpu_search(device):
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(1500, 12)), rng.normal(size=(700, 12))
    for search in (knn_euclidean, knn_cosine):
        i1, d1 = search(a, b, 9)
        i2, d2 = search(a, b, 9, device=device)  # a device selects the torch backend
        assert np.array_equal(i1, i2)
        np.testing.assert_allclose(d2, d1, rtol=1e-10, atol=1e-12)
        i3, _ = search(a, b, 9, knn_backend="torch", device=device)
        assert np.array_equal(i1, i3)
    # Ties go to the lower index, as on the CPU.
    b2 = np.repeat(b[:5], 3, axis=0)
    assert np.array_equal(knn_euclidean(a, b2, 4, device=device)[0], knn_euclidean(a, b2, 4)[0])
    assert knn_euclidean(a[:3], b[:2], 5, device=device)[0].shape == (3, 2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("candidates", ["quantile-knn", "centroid", "decoder-cosine"])
def test_match_equals_semot_match(device, candidates):
    rng = np.random.default_rng(4)
    shift = 3 * rng.normal(size=(40, 5))
    src = semot.PointClouds.from_padded(
        rng.normal(size=(40, 10, 5)) + shift[:, None], rng.random((40, 10)) + 0.1
    )
    tgt = semot.PointClouds.from_padded(
        rng.normal(size=(30, 10, 5)) + shift[:30, None], rng.random((30, 10)) + 0.1
    )
    kw = dict(candidates=candidates, n_candidates=5, threshold="auto")
    if candidates == "decoder-cosine":
        kw |= dict(source_decoder=rng.normal(size=(40, 8)), target_decoder=rng.normal(size=(30, 8)))
    want = semot.match(src, tgt, **kw)
    pd.testing.assert_frame_equal(semot.match(src, tgt, device=device, **kw), want)
    pairs = candidate_pairs(src, tgt, candidates, 5, device=device, **{
        k: v for k, v in kw.items() if k.endswith("decoder")})  # fmt: skip
    assert pairs.shape == (200, 2) and (pairs[:, 0] == np.repeat(np.arange(40), 5)).all()


def test_errors():
    rng = np.random.default_rng(5)
    c = ragged(rng, 5, 3, np.float64)
    if not CUDA:
        with pytest.raises(RuntimeError, match="no CUDA device"):
            tb.sliced_quantile_embedding(c, device="cuda")
    with pytest.raises(ValueError, match="candidates"):
        candidate_pairs(c, c, "nope", device="cpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decoder"):
        candidate_pairs(c, c, "decoder-cosine", device="cpu")
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        knn_euclidean(np.zeros((3, 2)), np.zeros((3, 4)), 1, device="cpu")
    with pytest.raises(ValueError, match="device: only for knn_backend='torch'"):
        knn_euclidean(np.zeros((3, 2)), np.zeros((3, 2)), 1, knn_backend="faiss", device="cpu")


def test_old_torch_backend_path_resolves_to_the_one_match():
    rng = np.random.default_rng(6)
    src = semot.PointClouds.from_padded(rng.normal(size=(12, 6, 3)))
    tgt = semot.PointClouds.from_padded(rng.normal(size=(9, 6, 3)))
    sys.modules.pop("semot.torch_backend", None)  # warn again if imported before
    with pytest.warns(DeprecationWarning, match="semot.torch_backend is deprecated"):
        import semot.torch_backend as old
    assert old.match is semot.match
    assert old.candidate_pairs is candidate_pairs and old.knn_euclidean is knn_euclidean
    kw = dict(candidates="quantile-knn", n_candidates=4)
    pd.testing.assert_frame_equal(
        old.match(src, tgt, device="cpu", **kw), semot.match(src, tgt, **kw)
    )
    emb = old.sliced_quantile_embedding(src, seed=0, n_projections=8, device="cpu")
    assert emb.shape == (12, 8 * 6)
