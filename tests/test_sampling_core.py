"""The Rust sampler kernel (backend "core") against the elementwise numpy/torch implementation.

Both must leave every buffer bit-identical, slot for slot, so that samples do not depend on the
backend and checkpoints resume on either.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semot import _core
from semot.features.sampling import FeatureSampler, hash_bits, hash_uniform

from conftest import optional_import

# The checkpoint format: FeatureSampler.state_dict()'s buffers, in this order.
BUFFERS = ("keys", "tb", "acts", "points", "counts", "act_sums")


def _assert_same_state(a: FeatureSampler, b: FeatureSampler) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) == list(BUFFERS)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert sa[name].shape == sb[name].shape, name
        assert sa[name].tobytes() == sb[name].tobytes(), name


def _assert_same_result(a: FeatureSampler, b: FeatureSampler) -> None:
    ra, rb = a.result(), b.result()
    for name in vars(ra):
        x, y = getattr(ra, name), getattr(rb, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name


@st.composite
def streams(draw: st.DrawFn) -> dict:
    """A few batches of a random stream: ties, silent features, negative values, any sizes."""
    f = draw(st.integers(1, 70))  # more than one chunk of 32 features
    k = draw(st.integers(1, 3))
    n = draw(st.integers(1, 9))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    ties = draw(st.booleans())
    seed = draw(st.integers(0, 2**64 - 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    batches = []
    first_seq = draw(st.integers(0, 2**33))
    for _ in range(draw(st.integers(1, 4))):
        seqs, length = draw(st.integers(0, 5)), draw(st.integers(1, 6))
        rows = seqs * length
        acts = rng.exponential(size=(rows, f)) * (rng.random((rows, f)) < density)
        if ties:
            acts = np.round(acts * 2) / 2
        acts[rng.random((rows, f)) < 0.05] *= -1  # negative: does not fire
        acts[:, rng.random(f) < 0.2] = 0  # features that never fire
        seq = np.repeat(np.arange(first_seq, first_seq + seqs), length).astype(np.int64)
        pos = np.tile(np.arange(length), seqs).astype(np.int64)
        first_seq += seqs
        points = rng.normal(size=(rows, k))
        batches.append((acts.astype(np.float32), points.astype(np.float32), seq, pos))
    return {"f": f, "k": k, "n": n, "seed": seed, "batches": batches}


def _sampler(s: dict, mode: str, backend: str, **kw) -> FeatureSampler:
    return FeatureSampler(s["f"], s["n"], s["k"], mode=mode, seed=s["seed"], backend=backend, **kw)


@given(s=streams(), mode=st.sampled_from(["weighted", "top"]), split=st.integers(0, 4))
@settings(max_examples=200, deadline=None)
def test_core_is_bit_identical_to_elementwise(s, mode, split):
    """Every buffer and the result, after each batch; a checkpoint taken after ``split``
    batches of one backend resumes on the other; 1 and 2 threads agree."""
    core1 = _sampler(s, mode, "core", n_threads=1)
    core2 = _sampler(s, mode, "core", n_threads=2)
    elem = _sampler(s, mode, "elementwise")
    for i, batch in enumerate(s["batches"]):
        if i == split:
            resumed = _sampler(s, mode, "elementwise")
            resumed.load_state_dict(core2.state_dict())
            elem_resumed = _sampler(s, mode, "core")
            elem_resumed.load_state_dict(elem.state_dict())
            core2, elem = elem_resumed, resumed
        for smp in (core1, core2, elem):
            smp.update(*batch)
        _assert_same_state(core1, elem)
        _assert_same_state(core1, core2)
    _assert_same_result(core1, elem)


def test_core_accepts_float64_and_other_dtypes_like_elementwise():
    rng = np.random.default_rng(5)
    acts = (rng.exponential(size=(40, 7)) * (rng.random((40, 7)) < 0.4)).astype(np.float64)
    points = rng.normal(size=(40, 3))
    seq, pos = np.repeat(np.arange(8), 5), np.tile(np.arange(5), 8)
    for a, p, sq in [
        (acts, points, seq),  # float64 activations and points
        (acts.astype(np.float16), points.astype(np.float16), seq.astype(np.int32)),
        (np.round(acts * 3).astype(np.int64), points, seq),
        (np.asfortranarray(acts.astype(np.float32)), points[:, ::-1], seq),  # not contiguous
    ]:
        core = FeatureSampler(7, 3, 3, backend="core")
        elem = FeatureSampler(7, 3, 3, backend="elementwise")
        core.update(a, p, sq, pos)
        elem.update(a, p, sq, pos)
        _assert_same_state(core, elem)


def test_cpu_tensors_are_bit_identical_to_numpy():
    torch = optional_import("torch")
    rng = np.random.default_rng(6)
    acts = (rng.exponential(size=(60, 40)) * (rng.random((60, 40)) < 0.3)).astype(np.float32)
    points = rng.normal(size=(60, 4)).astype(np.float32)
    seq, pos = np.repeat(np.arange(10), 6), np.tile(np.arange(6), 10)
    ref = FeatureSampler(40, 5, 4, seed=3, backend="elementwise")
    ref.update(acts, points, seq, pos)
    like = torch.empty(0)
    for backend in ("auto", "core", "elementwise"):
        smp = FeatureSampler(40, 5, 4, seed=3, like=like, backend=backend)
        assert smp.backend == ("elementwise" if backend == "elementwise" else "core")
        with torch.inference_mode():
            smp.update(
                torch.from_numpy(acts),
                torch.from_numpy(points),
                torch.from_numpy(seq),
                torch.from_numpy(pos),
            )
        _assert_same_state(smp, ref)
    # bfloat16 activations: the same as their exact float32 values.
    a16 = torch.from_numpy(acts).to(torch.bfloat16)
    smp = FeatureSampler(40, 5, 4, seed=3, like=like)
    smp.update(a16, torch.from_numpy(points), torch.from_numpy(seq), torch.from_numpy(pos))
    ref16 = FeatureSampler(40, 5, 4, seed=3, backend="elementwise")
    ref16.update(a16.float().numpy(), points, seq, pos)
    _assert_same_state(smp, ref16)


def test_weighted_keys_are_minus_log_u_over_a():
    """The core's keys against numpy's log (which may round the other way: 1 ulp)."""
    rng = np.random.default_rng(7)
    seq = rng.integers(0, 2**40, 50_000)
    pos = rng.integers(0, 4096, seq.size)
    feat = rng.integers(0, 2**20, seq.size)
    a = rng.exponential(size=seq.size) + 1e-3
    keys = _core.sampler_keys(hash_bits(11, seq, pos, feat), a)
    np.testing.assert_array_max_ulp(keys, -np.log(hash_uniform(11, seq, pos, feat)) / a, 2)
    bits = np.array([0, 2**48 - 1, 12345], dtype=np.int64)
    expected = [-math.log((b + 0.5) / 2**48) / 2.0 for b in bits.tolist()]
    np.testing.assert_allclose(_core.sampler_keys(bits, np.full(3, 2.0)), expected, rtol=1e-15)
    with pytest.raises(ValueError, match="bits: expected 48-bit hashes"):
        _core.sampler_keys(np.array([2**48]), np.ones(1))


@pytest.mark.parametrize("backend", ["core", "elementwise"])
def test_bad_input_same_errors_and_nothing_changes(backend):
    smp = FeatureSampler(40, 2, 2, backend=backend)
    seq, pos = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    good = np.zeros((4, 40), np.float32)
    good[:, 3] = [1, 2, 0, 4]
    smp.update(good, np.ones((4, 2), np.float32), seq, pos)
    before = {k: v.copy() for k, v in smp.state_dict().items()}
    acts = good.copy()
    acts[2, 35] = np.inf
    acts[3, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"activations: non-finite value for feature 35 at sequence 6, position 0"
    ):
        smp.update(acts, np.ones((4, 2), np.float32), seq + 5, pos)
    acts = good.copy()
    acts[1, 0] = -np.inf
    with pytest.raises(ValueError, match="feature 0 at sequence 0, position 1"):
        smp.update(acts, np.ones((4, 2), np.float32), seq, pos)
    points = np.ones((4, 2), np.float32)
    points[3, 1] = np.nan
    with pytest.raises(
        ValueError, match="points: non-finite support point at sequence 1, position 1"
    ):
        smp.update(good, points, seq, pos)
    with pytest.raises(ValueError, match=r"seq: expected shape \(4,\), got \(3,\)"):
        smp.update(good, np.ones((4, 2), np.float32), seq[:3], pos)
    with pytest.raises(ValueError, match=r"pos: expected shape \(4,\)"):
        smp.update(good, np.ones((4, 2), np.float32), seq, pos[:, None])
    for name, value in smp.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    # A sum that overflows float32 is not a non-finite value.
    big = np.zeros((4, 40), np.float32)
    big[:, 5] = 3e38
    smp.update(big, np.ones((4, 2), np.float32), seq + 9, pos)
    assert smp.state_dict()["counts"][5] == 4


def test_backend_argument():
    with pytest.raises(ValueError, match="backend"):
        FeatureSampler(3, 2, 2, backend="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_threads"):
        FeatureSampler(3, 2, 2, n_threads=0)
    assert FeatureSampler(3, 2, 2).backend == "core"
    torch = optional_import("torch")
    meta = torch.empty(0, device="meta")  # not the CPU, like a GPU tensor
    with pytest.raises(ValueError, match="backend: 'core' runs on the CPU"):
        FeatureSampler(3, 2, 2, like=meta, backend="core")
    assert FeatureSampler(3, 2, 2, like=meta).backend == "elementwise"
    smp = FeatureSampler(3, 2, 2, backend="core")
    with pytest.raises(ValueError, match="activations: a tensor on meta"):
        smp.update(
            torch.zeros((2, 3), device="meta"),
            torch.zeros((2, 2)),
            torch.zeros(2, dtype=torch.long),
            torch.arange(2),
        )


@given(s=streams(), mode=st.sampled_from(["weighted", "top"]), chunk=st.integers(1, 5))
@settings(max_examples=100, deadline=None)
def test_result_in_place_equals_the_copy_and_finishes_the_sampler(s, mode, chunk):
    """The in-place compaction gives the copying result bit for bit, whatever the chunking."""
    from semot.features import sampling

    samplers = [_sampler(s, mode, backend) for backend in ("core", "core", "elementwise")]
    for smp in samplers:
        for batch in s["batches"]:
            smp.update(*batch)
    copied = samplers[0].result()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sampling, "_COMPACT_FEATURES", chunk)
        for smp in samplers[1:]:
            kept = smp.points
            packed = smp.result(in_place=True)
            for name in vars(copied):
                x, y = getattr(copied, name), getattr(packed, name)
                assert x.dtype == y.dtype and x.shape == y.shape, name
                assert x.tobytes() == y.tobytes(), name
            # A view of the sampler's buffer, not a second copy.
            assert packed.points.size == 0 or np.shares_memory(packed.points, kept)
            with pytest.raises(ValueError, match="finished by result"):
                smp.result()
            with pytest.raises(ValueError, match="finished by result"):
                smp.state_dict()
            with pytest.raises(ValueError, match="finished by result"):
                smp.update(*s["batches"][0])
