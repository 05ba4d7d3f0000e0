"""semot.match and the baselines against brute force written plainly here."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import semot
from semot.matching.baselines import (
    activation_correlation_match,
    centroid_match,
    decoder_cosine_match,
    fold_sae,
    sae_match,
)
from semot.matching.frame import chain, matches_from_distances
from semot.matching.matcher import match
from semot.matching.search import knn_euclidean, smallest_k

from conftest import optional_import

pd = pytest.importorskip("pandas")


def clouds(rng, n_clouds, n=12, d=5, shift=None):
    pts = rng.normal(size=(n_clouds, n, d))
    if shift is not None:
        pts = pts + shift[:, None, :]
    w = rng.random((n_clouds, n)) + 0.1
    return semot.PointClouds.from_padded(pts, w)


def brute_topk(D, k):
    out = []
    for i in range(D.shape[0]):
        order = sorted(range(D.shape[1]), key=lambda j: (D[i, j], j))[:k]
        out.append(order)
    return np.array(out)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    shift = rng.normal(size=(20, 5)) * 3
    a = clouds(rng, 20, shift=shift)
    b = clouds(rng, 25, shift=np.vstack([shift[::-1], rng.normal(size=(5, 5)) * 3]))
    return a, b


def test_nearest_equals_brute_force_topk(pair):
    a, b = pair
    proj = semot.random_projections(5, 64, seed=3)
    D = semot.sliced_wasserstein_cdist(a, b, projections=proj)
    m = match(a, b, distance="sliced", k=3, n_projections=64, seed=3)
    assert list(m.columns) == ["source", "target", "rank", "distance", "matched"]
    top = brute_topk(D, 3)
    for i in range(len(a)):
        rows = m[m.source == i].sort_values("rank")
        assert rows["target"].tolist() == top[i].tolist()
        np.testing.assert_allclose(rows["distance"], D[i, top[i]], rtol=1e-12)
    assert m.matched.sum() == len(a)


@pytest.mark.parametrize("candidates", ["quantile-knn", "centroid"])
def test_candidates_covering_everything_change_nothing(pair, candidates):
    a, b = pair
    full = match(a, b, k=4)
    cand = match(a, b, k=4, candidates=candidates, n_candidates=len(b))
    pd.testing.assert_frame_equal(full.reset_index(drop=True), cand.reset_index(drop=True))


def test_quantile_knn_candidates_recall_exact_top1(pair):
    a, b = pair
    full = match(a, b, k=1)
    cand = match(a, b, k=1, candidates="quantile-knn", n_candidates=5)
    assert (full.target.to_numpy() == cand.target.to_numpy()).mean() >= 0.95


def test_decoder_cosine_candidates(pair):
    a, b = pair
    rng = np.random.default_rng(1)
    wa, wb = rng.normal(size=(20, 7)), rng.normal(size=(25, 7))
    m = match(
        a, b, k=2, candidates="decoder-cosine", n_candidates=3, source_decoder=wa, target_decoder=wb
    )
    cos = (wa / np.linalg.norm(wa, axis=1, keepdims=True)) @ (
        wb / np.linalg.norm(wb, axis=1, keepdims=True)
    ).T
    for i in range(20):
        allowed = set(np.argsort(-cos[i], kind="stable")[:3].tolist())
        assert set(m[m.source == i].target.tolist()) <= allowed
    with pytest.raises(ValueError, match="needs source_decoder"):
        match(a, b, candidates="decoder-cosine")


def _plain_means(c):
    out = []
    for pts, w in c:
        w = np.asarray(w, np.float64)
        out.append((np.asarray(pts, np.float64) * (w / w.sum())[:, None]).sum(0))
    return np.array(out)


def test_centroid_distance_is_the_default_and_equals_the_distance_of_the_means(pair):
    a, b = pair
    ma, mb = _plain_means(a), _plain_means(b)
    D = np.array([[np.sqrt(((x - y) ** 2).sum()) for y in mb] for x in ma])
    m = match(a, b, k=4)
    assert m.equals(match(a, b, k=4, distance="centroid"))
    top = brute_topk(D, 4)
    for i in range(len(a)):
        rows = m[m.source == i].sort_values("rank")
        assert rows["target"].tolist() == list(top[i])
        np.testing.assert_allclose(rows["distance"], D[i, top[i]], rtol=1e-10)
    # W2 >= the distance of the means (it is the location part of W2): checked with POT.
    ot = pytest.importorskip("ot")
    (xa, wa), (xb, wb) = a[0], b[0]
    cost = ot.dist(np.asarray(xa, np.float64), np.asarray(xb, np.float64))
    w2 = np.sqrt(ot.emd2(np.asarray(wa, np.float64), np.asarray(wb, np.float64), cost))
    assert D[0, 0] <= w2 + 1e-9


@pytest.mark.parametrize("distance", ["centroid", "sliced"])
@pytest.mark.parametrize("candidates", [None, "centroid"])
def test_joint_score_is_the_sum_of_the_two_ranks(pair, distance, candidates):
    a, b = pair
    rng = np.random.default_rng(5)
    wa, wb = rng.normal(size=(len(a), 7)), rng.normal(size=(len(b), 7))
    kw = dict(distance=distance, candidates=candidates, n_candidates=6, seed=1)
    dist = match(a, b, k=len(b), **kw)
    m = match(a, b, k=3, score="joint", source_decoder=wa, target_decoder=wb, **kw)
    assert list(m.columns)[:5] == ["source", "target", "rank", "distance", "score"]
    cos = (wa / np.linalg.norm(wa, axis=1)[:, None]) @ (wb / np.linalg.norm(wb, axis=1)[:, None]).T
    for i in range(len(a)):
        rows = dist[dist.source == i]
        targets = rows["target"].astype(int).tolist()
        d = dict(zip(targets, rows["distance"], strict=True))
        by_d = sorted(targets, key=lambda j: (d[j], j))
        by_c = sorted(targets, key=lambda j: (1 - cos[i, j], j))
        joint = {j: by_d.index(j) + by_c.index(j) for j in targets}
        want = sorted(targets, key=lambda j: (joint[j], j))[:3]
        got = m[m.source == i].sort_values("rank")
        assert got["target"].astype(int).tolist() == want
        assert got["score"].tolist() == [joint[j] for j in want]
        np.testing.assert_allclose(got["distance"], [d[j] for j in want], rtol=1e-12)


def test_joint_score_needs_decoders_and_refuses_thresholds(pair):
    a, b = pair
    with pytest.raises(ValueError, match="score: 'joint' needs source_decoder"):
        match(a, b, score="joint")
    w = np.ones((40, 3))
    with pytest.raises(ValueError, match="threshold and margin are not defined"):
        match(a, b, score="joint", source_decoder=w, target_decoder=w, threshold="auto")
    with pytest.raises(ValueError, match="score"):
        match(a, b, score="best")


def test_one_to_one_is_an_optimal_valid_matching(pair):
    a, b = pair
    proj = semot.random_projections(5, 128, seed=0)
    D = semot.sliced_wasserstein_cdist(a, b, projections=proj)
    m = match(a, b, distance="sliced", assignment="one-to-one")
    assert len(m) == len(a) and m.target.is_unique
    r, c = linear_sum_assignment(D)
    np.testing.assert_allclose(m.distance.sum(), D[r, c].sum(), rtol=1e-10)
    # Sparse path on a candidate graph: optimal among candidate edges (brute force: dense
    # assignment where non-candidate edges cost more than any real one).
    ms = match(
        a, b, distance="sliced", assignment="one-to-one", candidates="centroid", n_candidates=4
    )
    assert ms.target.dropna().is_unique
    cand = match(a, b, distance="sliced", k=4, candidates="centroid", n_candidates=4)
    big = np.full(D.shape, 1e6)
    big[cand.source, cand.target.astype(int)] = D[cand.source, cand.target.astype(int)]
    r, c = linear_sum_assignment(big)
    np.testing.assert_allclose(ms.distance.sum(), big[r, c].sum(), rtol=1e-10)


def test_threshold_and_margin_edges(pair):
    a, b = pair
    every = match(a, b, threshold=1e9)
    assert every.matched.sum() == len(a)
    none = match(a, b, threshold=0.0)
    assert none.matched.sum() == 0
    assert match(a, b, margin=0.0).matched.sum() == len(a)
    assert match(a, b, margin=0.999999).matched.sum() == 0
    m = match(a, b, margin=0.2, k=2)
    best = m[m["rank"] == 1].set_index("source")
    second = m[m["rank"] == 2].set_index("source")
    expect = best.distance <= 0.8 * second.distance
    assert (best.matched == expect).all()
    o = match(a, b, assignment="one-to-one", threshold=0.0)
    assert o.matched.sum() == 0


def test_feature_distributions_keep_ids_and_skip_unfired(pair):
    a, _ = pair
    fd_kwargs = dict(
        points=a.points.astype(np.float32),
        weights=a.weights.astype(np.float32),
        activations=np.ones(a.points.shape[0], np.float32),
        keys=np.zeros(a.points.shape[0]),
        seq=np.zeros(a.points.shape[0], np.int64),
        pos=np.arange(a.points.shape[0]),
        offsets=np.append(a.offsets, a.offsets[-1]),
        feature_ids=np.arange(100, 121),
        firing_counts=np.append(np.full(20, 12), 0),
        activation_sums=np.append(np.ones(20), 0.0),
        metadata={"n_tokens": 1000},
    )
    fd = semot.FeatureDistributions.from_arrays(**fd_kwargs)
    with pytest.warns(UserWarning, match="1 of 21 features never fired"):
        m = match(fd, fd, k=1)
    assert (m.source == m.target).all() and m.source.min() == 100
    np.testing.assert_allclose(m.distance, 0.0, atol=1e-6)


def test_errors(pair):
    a, b = pair
    with pytest.raises(ValueError, match="distance"):
        match(a, b, distance="w1")
    with pytest.raises(ValueError, match="metric"), pytest.warns(DeprecationWarning):
        match(a, b, metric="w1")
    # The checks of semot._utils.checks (wrong type: TypeError; bad value: ValueError).
    with pytest.raises(ValueError, match="k: must be >= 1"):
        match(a, b, k=0)
    with pytest.raises(TypeError, match="k: expected an integer"):
        match(a, b, k="3")
    with pytest.raises(ValueError, match="device: only for knn_backend='torch'"):
        match(a, b, candidates="centroid", knn_backend="numpy", device="cpu")
    with pytest.raises(ValueError, match="different spaces"):
        match(a, clouds(np.random.default_rng(0), 3, d=4))
    with pytest.raises(ValueError, match="margin: only"):
        match(a, b, margin=0.1, assignment="one-to-one")
    with pytest.raises(ValueError, match="non-empty"):
        matches_from_distances(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"entry \(0, 1\) is not finite"):
        matches_from_distances(np.array([[0.0, np.nan]]))


# POT's epsilon scaling warns about its inner stages; its final value is what is compared.
@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge:UserWarning")
def test_sinkhorn_metric_agrees_with_pot(pair):
    ot = pytest.importorskip("ot")
    from scipy.special import logsumexp

    a, b = pair
    reg = 0.5
    m = match(a[:4], b[:6], distance="sinkhorn", reg=reg, k=6)

    def entropic(u, wu, v, wv):
        # Entropic objective <P, C> + reg KL(P | a b^T) at POT's optimal plan (the value the
        # Sinkhorn divergence is built from). Between different clouds POT converges to
        # stopThr=1e-12 in a few hundred iterations.
        M = ot.dist(u, v)
        P = ot.sinkhorn(
            wu, wv, M, reg, method="sinkhorn_log", stopThr=1e-12, numItermax=20000, warn=False
        )
        nz = P > 0
        kl = (P[nz] * np.log(P[nz] / np.outer(wu, wv)[nz])).sum()
        return (P * M).sum() + reg * kl

    def entropic_self(u, wu):
        # OT_eps(a, a) = 2 <a, f> at the fixed point of the averaged symmetric update
        # f <- (f + T(f)) / 2, which converges in a few dozen steps where alternating
        # Sinkhorn needs tens of thousands on a self problem.
        M, f, la = ot.dist(u, u), np.zeros(len(wu)), np.log(wu)
        for _ in range(1000):
            new = 0.5 * (f - reg * logsumexp(la[None, :] + (f[None, :] - M) / reg, axis=1))
            done = np.abs(new - f).max() < 1e-15
            f = new
            if done:
                break
        return 2.0 * float(wu @ f)

    # The symmetric value is POT's on a self problem (epsilon scaling gets there quickly).
    x0, w0 = a[0]
    M0 = ot.dist(x0, x0)
    P0 = ot.bregman.sinkhorn_epsilon_scaling(w0, w0, M0, reg, stopThr=1e-12, warn=False)
    nz = P0 > 0
    pot0 = (P0 * M0).sum() + reg * (P0[nz] * np.log(P0[nz] / np.outer(w0, w0)[nz])).sum()
    np.testing.assert_allclose(entropic_self(x0, w0), pot0, rtol=1e-6)

    # Each self term once (4 sources, 6 targets), one POT problem per pair.
    self_a = {i: entropic_self(*a[i]) for i in range(4)}
    self_b = {j: entropic_self(*b[j]) for j in range(6)}
    assert len(m) == 24
    for _, row in m.iterrows():
        i, j = int(row.source), int(row.target)
        # semot reports the divergence's square root (the 1/p power of the cost, p = 2).
        s = entropic(*a[i], *b[j]) - 0.5 * (self_a[i] + self_b[j])
        np.testing.assert_allclose(row.distance, max(0.0, s) ** 0.5, rtol=1e-5, atol=1e-7)


def test_decoder_cosine_baseline_brute_force():
    rng = np.random.default_rng(2)
    ws, wt = rng.normal(size=(8, 4)), rng.normal(size=(9, 4))
    m = decoder_cosine_match(ws, wt, k=2)
    for i in range(8):
        cos = [ws[i] @ wt[j] / np.linalg.norm(ws[i]) / np.linalg.norm(wt[j]) for j in range(9)]
        order = sorted(range(9), key=lambda j: (1 - cos[j], j))[:2]
        assert m[m.source == i].target.tolist() == order


def test_activation_correlation_baseline_brute_force():
    rng = np.random.default_rng(3)
    xs = rng.random((200, 6))
    xt = np.hstack([xs[:, ::-1] + 0.1 * rng.random((200, 6)), rng.random((200, 2))])
    m = activation_correlation_match(xs, xt, k=1)
    r = np.corrcoef(xs.T, xt.T)[:6, 6:]
    np.testing.assert_array_equal(m.target.to_numpy(), r.argmax(1))
    np.testing.assert_allclose(m.distance, 1 - r.max(1), rtol=1e-10)
    np.testing.assert_array_equal(m.target.to_numpy(), np.arange(6)[::-1])
    with pytest.raises(ValueError, match="same tokens"):
        activation_correlation_match(xs, xt[:10])


def test_centroid_baseline_brute_force(pair):
    a, b = pair
    m = centroid_match(a, b, k=1)
    ca = [(a[i][1][:, None] * a[i][0]).sum(0) for i in range(len(a))]
    cb = [(b[j][1][:, None] * b[j][0]).sum(0) for j in range(len(b))]
    for i in range(len(a)):
        d = [np.linalg.norm(ca[i] - cb[j]) for j in range(len(b))]
        assert int(m.target[i]) == int(np.argmin(d))
        np.testing.assert_allclose(m.distance[i], min(d), rtol=1e-9)


def test_sae_match_recovers_a_rescaled_permutation():
    rng = np.random.default_rng(4)
    d, f = 6, 10
    we, be, wd = rng.normal(size=(d, f)), rng.normal(size=f), rng.normal(size=(f, d))
    thr = rng.random(f) + 0.5
    perm = rng.permutation(f)
    s = rng.random(f) + 0.5  # per-feature rescaling: same function, different parameters
    tgt = {
        "W_enc": we[:, perm] * s,
        "b_enc": be[perm] * s,
        "W_dec": wd[perm] / s[:, None],
        "threshold": thr[perm] * s,
    }
    m = sae_match({"W_enc": we, "b_enc": be, "W_dec": wd, "threshold": thr}, tgt)
    assert m.target.is_unique
    np.testing.assert_array_equal(m.target.to_numpy()[perm], np.arange(f))
    np.testing.assert_allclose(m.distance, 0.0, atol=1e-9)
    fe, fb, fd = fold_sae(we, be, wd, threshold=thr)
    np.testing.assert_allclose(fb[3], be[3] / thr[3])
    np.testing.assert_allclose(fe[:, 3], we[:, 3] / thr[3])
    np.testing.assert_allclose(fd[3], wd[3] * thr[3])


def test_chain_composes_matches():
    m1 = pd.DataFrame(
        {
            "source": [0, 1, 2],
            "target": pd.array([5, 6, 7], dtype="Int64"),
            "rank": 1,
            "distance": [1.0, 2.0, 3.0],
            "matched": [True, True, False],
        }
    )
    m2 = pd.DataFrame(
        {
            "source": [5, 6],
            "target": pd.array([9, 8], dtype="Int64"),
            "rank": 1,
            "distance": [0.5, 0.25],
            "matched": [True, True],
        }
    )
    c = chain([m1, m2])
    assert c.target.tolist()[:2] == [9, 8]
    assert c.target.isna().tolist() == [False, False, True]
    np.testing.assert_allclose(c.distance[:2], [1.5, 2.25])
    assert c.via[0] == [0, 5, 9] and c.steps.tolist() == [2, 2, 0]


def test_smallest_k_brute_force_with_ties():
    rng = np.random.default_rng(5)
    d = rng.integers(0, 4, size=(50, 30)).astype(np.float64)  # many ties
    for k in (1, 3, 7, 30):
        idx, val = smallest_k(d, k)
        for r in range(50):
            want = sorted(range(30), key=lambda c: (d[r, c], c))[:k]
            assert idx[r].tolist() == want
            np.testing.assert_array_equal(val[r], d[r, want])


def test_knn_float32_and_faiss_agree_with_brute_force():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(40, 16)).astype(np.float32)
    b = rng.normal(size=(300, 16)).astype(np.float32)
    brute = np.linalg.norm(a[:, None, :].astype(np.float64) - b[None].astype(np.float64), axis=-1)
    want = np.argsort(brute, axis=1, kind="stable")[:, :5]
    idx, dist = knn_euclidean(a, b, 5, block=7)
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_allclose(dist, np.take_along_axis(brute, want, 1), rtol=1e-4)
    optional_import("faiss")
    fi, fd = knn_euclidean(a, b, 5, knn_backend="faiss")
    np.testing.assert_array_equal(fi, want)
    np.testing.assert_allclose(fd, np.take_along_axis(brute, want, 1), rtol=1e-4)
    with pytest.raises(ValueError, match="knn_backend"):
        knn_euclidean(a, b, 5, knn_backend="annoy")  # type: ignore[arg-type]


def test_sparse_one_to_one_reports_the_chosen_distances(pair):
    a, b = pair
    m = match(a, b, assignment="one-to-one", candidates="quantile-knn", n_candidates=3)
    full = match(a, b, k=len(b))
    for _, row in m.dropna(subset=["target"]).iterrows():
        ref = full[(full.source == row.source) & (full.target == row.target)].distance.iloc[0]
        assert row.distance == ref
    assert m["target"].dropna().is_unique


def test_match_uses_faiss_when_asked(pair, monkeypatch):
    faiss = optional_import("faiss")
    a, b = pair
    built = []
    real = {name: getattr(faiss, name) for name in ("IndexFlatL2", "IndexFlatIP")}

    def spy(name):
        def make(d):
            built.append(name)
            return real[name](d)

        return make

    for name in real:
        monkeypatch.setattr(faiss, name, spy(name))
    kw = dict(k=2, n_candidates=6)
    for candidates in ("quantile-knn", "centroid"):
        got = match(a, b, candidates=candidates, knn_backend="faiss", **kw)
        assert built == ["IndexFlatL2"], candidates
        built.clear()
        pd.testing.assert_frame_equal(got, match(a, b, candidates=candidates, **kw))
    assert built == []  # the numpy search never builds a faiss index
    rng = np.random.default_rng(1)
    dec = dict(source_decoder=rng.normal(size=(20, 7)), target_decoder=rng.normal(size=(25, 7)))
    got = match(a, b, candidates="decoder-cosine", knn_backend="faiss", **kw, **dec)
    assert built == ["IndexFlatIP"]
    pd.testing.assert_frame_equal(got, match(a, b, candidates="decoder-cosine", **kw, **dec))


def test_metric_is_a_deprecated_alias_of_distance(pair):
    a, b = pair
    with pytest.warns(DeprecationWarning, match="use distance="):
        old = match(a[:5], b[:5], metric="sinkhorn", reg=0.5)
    pd.testing.assert_frame_equal(old, match(a[:5], b[:5], distance="sinkhorn", reg=0.5))
    with pytest.raises(TypeError, match="distance: give distance= or"):
        match(a, b, distance="sliced", metric="sliced")


def test_centroid_pdist_and_pairs_against_plain_means(pair):
    from semot.distances.centroid import centroid_pairs, centroid_pdist

    a, _ = pair
    m = _plain_means(a)
    n = len(a)
    want = [np.sqrt(((m[i] - m[j]) ** 2).sum()) for i in range(n) for j in range(i + 1, n)]
    np.testing.assert_allclose(centroid_pdist(a), want, rtol=1e-10)
    pairs = np.array([[0, 3], [5, 5], [19, 0]])
    np.testing.assert_allclose(
        centroid_pairs(a, a, pairs), [np.linalg.norm(m[i] - m[j]) for i, j in pairs], atol=1e-12
    )
    with pytest.raises(ValueError, match="different spaces"):
        centroid_pairs(a, clouds(np.random.default_rng(0), 3, d=4), pairs[:1])
