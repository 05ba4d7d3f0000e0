from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import semot
import semot.features.format as format_mod
from semot._utils.safetensors import CorruptFileError, read_safetensors, write_safetensors
from semot.clouds import as_clouds
from semot.features.container import FeatureDistributions

POINT_FIELDS = ("points", "weights", "activations", "keys", "seq", "pos")
FEATURE_FIELDS = ("feature_ids", "firing_counts", "activation_sums")


def make_arrays(
    rng: np.random.Generator,
    sizes: list[int] | np.ndarray,
    dim: int = 3,
    ids: Any = None,
    n_tokens: int = 1000,
    mode: str = "weighted",
) -> dict[str, Any]:
    sizes = np.asarray(sizes, dtype=np.int64)
    n_feat = sizes.shape[0]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    total = int(offsets[-1])
    act = (rng.random(total) + 0.1).astype(np.float32)
    weights = np.empty(total, dtype=np.float32)
    for f in range(n_feat):
        lo, hi = offsets[f], offsets[f + 1]
        raw = np.ones(hi - lo) if mode == "weighted" else act[lo:hi].astype(np.float64)
        weights[lo:hi] = raw / raw.sum() if hi > lo else raw
    counts = np.where(sizes > 0, sizes + rng.integers(0, 5, n_feat), 0)
    return {
        "points": rng.normal(size=(total, dim)).astype(np.float32),
        "weights": weights,
        "activations": act,
        "keys": rng.random(total),
        "seq": rng.integers(0, 50, total),
        "pos": rng.integers(0, 128, total),
        "offsets": offsets,
        "feature_ids": np.arange(n_feat, dtype=np.int64) * 7 + 1 if ids is None else ids,
        "firing_counts": counts.astype(np.int64),
        "activation_sums": rng.random(n_feat) * 10,
        "metadata": {
            "n_tokens": n_tokens,
            "model": "toy-model",
            "hook": "blocks.0.hook_resid_pre",
            "sampling": {"mode": mode, "n": 4},
        },
    }


def make_fd(rng: np.random.Generator, sizes: Any, **kw: Any) -> FeatureDistributions:
    ref = kw.pop("reference_arrays", None)
    return FeatureDistributions.from_arrays(**make_arrays(rng, sizes, **kw), reference_arrays=ref)


# sizes with unfired features (0) and a run of unfired features filling a whole shard of 3
SIZES = [2, 0, 4, 0, 0, 0, 1, 3, 0, 2, 5]


def assert_same(a: FeatureDistributions, b: FeatureDistributions) -> None:
    assert len(a) == len(b) and a.dim == b.dim and a.n_points == b.n_points
    for name in ("feature_ids", "firing_counts", "activation_sums", "sample_sizes"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    for i in range(len(a)):
        for x, y in zip(
            (*a.cloud(i), a.activations(i), a.keys(i), *a.provenance(i)),
            (*b.cloud(i), b.activations(i), b.keys(i), *b.provenance(i)),
            strict=True,
        ):
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
    assert a.metadata == b.metadata


# ---------------------------------------------------------------- safetensors


ALL_DTYPES = ["<f8", "<f4", "<f2", "<i8", "<i4", "<i2", "i1", "u1", "?"]


def sample_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, dt in enumerate(ALL_DTYPES):
        shape = [(3, 2), (5,), (2, 1, 3)][k % 3]
        out[f"t{k}"] = (rng.normal(size=shape) * 50).astype(dt)
    out["empty"] = np.zeros((0, 4), dtype=np.float32)
    out["scalar"] = np.array(2.5, dtype=np.float64)
    return out


@pytest.mark.parametrize("mmap", [True, False])
def test_safetensors_round_trip(tmp_path: Path, rng: np.random.Generator, mmap: bool) -> None:
    tensors = sample_tensors(rng)
    path = tmp_path / "a.safetensors"
    n_bytes, sha = write_safetensors(path, tensors, {"k": "v"})
    data = path.read_bytes()
    assert n_bytes == len(data) and sha == hashlib.sha256(data).hexdigest()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0
    header = json.loads(data[8 : 8 + n])
    for name, info in header.items():
        if name != "__metadata__":
            itemsize = np.dtype(tensors[name].dtype).itemsize
            assert info["data_offsets"][0] % itemsize == 0  # every tensor aligned
    got, meta = read_safetensors(path, mmap=mmap)
    assert meta == {"k": "v"}
    assert set(got) == set(tensors)
    for name, arr in tensors.items():
        assert got[name].dtype == arr.dtype and got[name].shape == arr.shape
        assert np.array_equal(got[name], arr)
        if arr.size and mmap:
            assert isinstance(got[name], np.memmap)
            assert not got[name].flags.writeable
        if not mmap:
            assert not isinstance(got[name], np.memmap)


def test_safetensors_only_empty_tensors(tmp_path: Path) -> None:
    path = tmp_path / "e.safetensors"
    write_safetensors(path, {"a": np.zeros((0, 3), np.float32), "b": np.zeros(0, np.int64)})
    got, meta = read_safetensors(path)
    assert got["a"].shape == (0, 3) and got["b"].dtype == np.int64 and meta == {}


def test_safetensors_compatible_with_the_package(tmp_path: Path, rng: np.random.Generator) -> None:
    st_numpy = pytest.importorskip("safetensors.numpy")
    tensors = sample_tensors(rng)
    ours = tmp_path / "ours.safetensors"
    write_safetensors(ours, tensors, {"who": "semot"})
    theirs = st_numpy.load_file(str(ours))
    assert set(theirs) == set(tensors)
    for name, arr in tensors.items():
        assert theirs[name].dtype == arr.dtype and np.array_equal(theirs[name], arr)
    from safetensors import safe_open

    with safe_open(str(ours), framework="numpy") as f:
        assert f.metadata() == {"who": "semot"}

    their_file = tmp_path / "theirs.safetensors"
    st_numpy.save_file(tensors, str(their_file), metadata={"who": "them"})
    for mmap in (True, False):
        got, meta = read_safetensors(their_file, mmap=mmap)
        assert meta == {"who": "them"}
        for name, arr in tensors.items():
            assert got[name].dtype == arr.dtype and np.array_equal(got[name], arr)


def craft(path: Path, header: Any, data: bytes = b"", n: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if n is None else n) + raw + data)
    return path


CORRUPT_CASES = {
    "short": (None, "shorter than the 8-byte"),
    "header_too_long": ({"a": 1}, "header claims"),
    "not_json": (b"{not json", "not valid JSON"),
    "not_object": ([1, 2], "not an object"),
    "unknown_dtype": ({"a": {"dtype": "F8", "shape": [1], "data_offsets": [0, 1]}}, "unknown"),
    "shape_mismatch": (
        {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
        "need 12",
    ),
    "out_of_file": (
        {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
        "past the end",
    ),
    "overlap": (
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
        },
        "overlap",
    ),
    "bad_entry": ({"a": [1]}, "expected an object"),
    "bad_metadata": ({"__metadata__": {"a": 1}}, "__metadata__"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_CASES))
def test_safetensors_corrupt(tmp_path: Path, case: str) -> None:
    header, expected = CORRUPT_CASES[case]
    path = tmp_path / f"{case}.safetensors"
    if case == "short":
        path.write_bytes(b"\x01\x02\x03")
    elif case == "header_too_long":
        craft(path, header, n=10_000)
    else:
        craft(path, header, data=b"\0" * 8)
    with pytest.raises(CorruptFileError, match=expected) as info:
        read_safetensors(path)
    assert path.name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_safetensors_truncated_data(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"x": np.arange(100, dtype=np.float64)})
    path.write_bytes(path.read_bytes()[:-9])
    with pytest.raises(CorruptFileError, match=r"t\.safetensors.*past the end"):
        read_safetensors(path)


def test_safetensors_atomic_failure_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.safetensors"
    write_safetensors(path, {"x": np.arange(3)})
    before = path.read_bytes()

    def boom(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_safetensors(path, {"x": np.arange(5)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.safetensors"]


def test_safetensors_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="complex"):
        write_safetensors(tmp_path / "c", {"z": np.zeros(2, np.complex64)})
    with pytest.raises(ValueError, match="reserved"):
        write_safetensors(tmp_path / "c", {"__metadata__": np.zeros(2)})
    with pytest.raises(TypeError, match="metadata"):
        write_safetensors(tmp_path / "c", {"a": np.zeros(2)}, {"a": 1})  # type: ignore[dict-item]


# ---------------------------------------------------------------- FeatureDistributions


def test_round_trip_several_shards(tmp_path: Path, rng: np.random.Generator) -> None:
    ref = {"mean": rng.normal(size=3), "basis": rng.normal(size=(3, 2)).astype(np.float32)}
    fd = make_fd(rng, SIZES, reference_arrays=ref)
    fd.save(tmp_path / "fd", shard_size=3)
    names = sorted(p.name for p in (tmp_path / "fd").iterdir())
    assert names == [
        "manifest.json",
        "reference.safetensors",
        *[f"shard-{k:05d}.safetensors" for k in range(4)],
    ]
    manifest = json.loads((tmp_path / "fd" / "manifest.json").read_text())
    assert manifest["n_features"] == len(SIZES) and manifest["dim"] == 3
    assert [s["features"] for s in manifest["shards"]] == [[0, 3], [3, 6], [6, 9], [9, 11]]
    assert manifest["shards"][1]["n_points"] == 0  # a shard of unfired features only
    assert manifest["reference_file"] == "reference.safetensors"
    assert manifest["metadata"] == fd.metadata
    for mmap in (True, False):
        back = FeatureDistributions.load(tmp_path / "fd", mmap=mmap)
        assert_same(fd, back)
        back_ref = back.reference_arrays
        assert back_ref is not None and set(back_ref) == set(ref)
        for name, arr in ref.items():
            assert back_ref[name].dtype == arr.dtype and np.array_equal(back_ref[name], arr)
        back.verify()
    assert FeatureDistributions.load(tmp_path / "fd").n_tokens == 1000


def test_round_trip_one_shard_and_empty(tmp_path: Path, rng: np.random.Generator) -> None:
    fd = make_fd(rng, SIZES)
    fd.save(tmp_path / "one")
    back = FeatureDistributions.load(tmp_path / "one")
    assert_same(fd, back)
    assert back.reference_arrays is None
    empty = make_fd(rng, [])
    empty.save(tmp_path / "empty")
    back = FeatureDistributions.load(tmp_path / "empty")
    assert len(back) == 0 and back.dim == 3 and back.n_points == 0
    assert back.feature_ids.shape == (0,)


def test_load_is_lazy(tmp_path: Path, rng: np.random.Generator) -> None:
    make_fd(rng, SIZES).save(tmp_path / "fd", shard_size=4)
    back = FeatureDistributions.load(tmp_path / "fd")
    for block in back._blocks:
        for name in POINT_FIELDS:
            if block[name].size:
                assert isinstance(block[name], np.memmap), name
    pts, w = back.cloud(0)
    assert isinstance(pts, np.memmap) and isinstance(w, np.memmap)
    assert not pts.flags.writeable
    assert isinstance(back.activations(2), np.memmap)


def test_properties(rng: np.random.Generator) -> None:
    arrays = make_arrays(rng, SIZES)
    fd = FeatureDistributions.from_arrays(**arrays)
    assert len(fd) == fd.n_features == len(SIZES)
    assert fd.sample_sizes.tolist() == SIZES
    assert np.array_equal(fd.fired, np.array(SIZES) > 0)
    assert np.array_equal(fd.fired_ids, arrays["feature_ids"][np.array(SIZES) > 0])
    assert np.array_equal(fd.densities, arrays["firing_counts"] / 1000.0)
    assert fd.densities.dtype == np.float64
    assert fd.index_of(int(arrays["feature_ids"][4])) == 4
    with pytest.raises(KeyError, match="12345"):
        fd.index_of(12345)
    with pytest.raises(IndexError):
        fd.cloud(len(SIZES))
    pts, w = fd.cloud(-1)
    assert pts.shape == (5, 3) and np.isclose(w.sum(), 1.0)
    assert fd.cloud(1)[0].shape == (0, 3)
    meta = arrays["metadata"]
    del meta["n_tokens"]
    fd2 = FeatureDistributions.from_arrays(**arrays)
    assert fd2.n_tokens is None
    with pytest.raises(ValueError, match="n_tokens"):
        _ = fd2.densities
    assert "n_features=11" in repr(fd) and len(repr(fd)) < 200
    text = fd.summary()
    for part in ("toy-model", "blocks.0.hook_resid_pre", "fired: 6", "weighted", "n = 4"):
        assert part in text
    assert "?" in fd2.summary()  # no SAE key, no tokens: still a summary


def test_summary_on_disk(tmp_path: Path, rng: np.random.Generator) -> None:
    make_fd(rng, SIZES, reference_arrays={"m": np.zeros(3)}).save(tmp_path / "fd", shard_size=5)
    text = FeatureDistributions.load(tmp_path / "fd").summary()
    assert "disk:" in text and "in 5 files" in text and "m (3,)" in text


def test_select_and_getitem(tmp_path: Path, rng: np.random.Generator) -> None:
    fd = make_fd(rng, SIZES)
    fd.save(tmp_path / "fd", shard_size=3)
    back = FeatureDistributions.load(tmp_path / "fd")
    ids = back.feature_ids
    for src in (fd, back):
        sel = src.select([ids[7], ids[0], ids[9]])
        assert sel.feature_ids.tolist() == [ids[7], ids[0], ids[9]]
        for k, p in enumerate([7, 0, 9]):
            assert np.array_equal(sel.cloud(k)[0], src.cloud(p)[0])
            assert np.array_equal(sel.provenance(k)[1], src.provenance(p)[1])
            assert np.array_equal(sel.keys(k), src.keys(p))
        assert sel.metadata == src.metadata
        assert src[2].feature_ids.tolist() == [ids[2]]
        assert src[-1].feature_ids.tolist() == [ids[-1]]
        assert src[1:8:2].feature_ids.tolist() == ids[1:8:2].tolist()
        assert src[np.array([4, 2])].feature_ids.tolist() == [ids[4], ids[2]]
        mask = np.array(SIZES) > 1
        assert src[mask].feature_ids.tolist() == ids[mask].tolist()
        assert len(src[[]]) == 0
        with pytest.raises(KeyError, match="999"):
            src.select([ids[0], 999])
        with pytest.raises(ValueError, match="twice"):
            src.select([ids[0], ids[0]])
        with pytest.raises(IndexError):
            src[[0, 11]]
    # a scattered selection (more pieces than are kept as views) is copied correctly
    order = rng.permutation(len(SIZES))
    sel = back[order]
    assert_same(sel, fd[order])
    for k, p in enumerate(order):
        assert np.array_equal(sel.activations(k), fd.activations(int(p)))
    # a contiguous slice stays a view of the memory map
    part = back[6:8]
    assert np.shares_memory(part.cloud(0)[0], back._blocks[2]["points"])


def test_concatenate(tmp_path: Path, rng: np.random.Generator) -> None:
    a = make_fd(rng, [1, 0, 2])
    b = make_fd(rng, [3, 1], ids=np.array([100, 101]))
    a.save(tmp_path / "a")
    loaded = FeatureDistributions.load(tmp_path / "a")
    cat = FeatureDistributions.concatenate([loaded, b])
    assert cat.feature_ids.tolist() == [1, 8, 15, 100, 101]
    assert cat.sample_sizes.tolist() == [1, 0, 2, 3, 1]
    assert np.array_equal(cat.cloud(3)[0], b.cloud(0)[0])
    assert np.array_equal(cat.cloud(2)[1], a.cloud(2)[1])
    meta = cat.metadata
    assert meta["model"] == "toy-model"
    assert [r["n_features"] for r in meta["concatenated_from"]] == [3, 2]
    assert meta["concatenated_from"][0]["source"] == str((tmp_path / "a").resolve())
    cat.save(tmp_path / "cat", shard_size=2)
    assert_same(cat, FeatureDistributions.load(tmp_path / "cat"))

    with pytest.raises(ValueError, match=r"feature id 8 is in runs\[0\] and runs\[1\]"):
        FeatureDistributions.concatenate([a, make_fd(rng, [1], ids=np.array([8]))])
    with pytest.raises(ValueError, match=r"runs\[1\]: dim 4"):
        FeatureDistributions.concatenate([a, make_fd(rng, [1], ids=np.array([50]), dim=4)])
    other = make_fd(rng, [1], ids=np.array([50]), mode="top")
    with pytest.raises(ValueError, match=r"runs\[1\]: metadata\['sampling'\]"):
        FeatureDistributions.concatenate([a, other])
    with pytest.raises(ValueError, match="at least one"):
        FeatureDistributions.concatenate([])


def test_to_clouds_zero_copy_and_warning(tmp_path: Path, rng: np.random.Generator) -> None:
    sizes = [0, 3, 2, 4, 0, 2, 0]
    fd = make_fd(rng, sizes, mode="top")
    fd.save(tmp_path / "fd", shard_size=4)
    back = FeatureDistributions.load(tmp_path / "fd")
    shard0 = back._blocks[0]
    with pytest.warns(UserWarning, match=r"1 of 4 features never fired.*fd\.fired_ids"):
        clouds = back[:4].to_clouds()
    assert len(clouds) == 3 and clouds.sizes.tolist() == [3, 2, 4]
    assert np.shares_memory(clouds.points, shard0["points"])
    assert np.shares_memory(clouds.weights, shard0["weights"])
    assert np.array_equal(back[:4].fired_ids, fd.feature_ids[1:4])
    with pytest.raises(ValueError, match="impossible"):
        back.to_clouds(include_unfired=True)
    # across shards: copied, same values, order of fired_ids
    with pytest.warns(UserWarning, match="3 of 7 features never fired"):
        everything = back.to_clouds()
    assert not np.shares_memory(everything.points, shard0["points"])
    kept = np.flatnonzero(np.array(sizes) > 0)
    assert len(everything) == len(back.fired_ids) == kept.shape[0]
    for k, p in enumerate(kept):
        pts, w = everything[k]
        assert np.array_equal(pts, fd.cloud(int(p))[0])
        assert np.allclose(w, fd.cloud(int(p))[1] / fd.cloud(int(p))[1].sum())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fired_only = back[1:4].to_clouds(include_unfired=True)
    assert len(fired_only) == 3
    with pytest.raises(ValueError, match="none of the 1 features fired"):
        back[:1].to_clouds()
    # the distance functions take a FeatureDistributions directly (as_clouds -> to_clouds)
    assert as_clouds(back[1:4], "A").n_points == 9
    d_fd = semot.sliced_wasserstein_pdist(back[1:4], n_projections=8, seed=1)
    d_pc = semot.sliced_wasserstein_pdist(fired_only, n_projections=8, seed=1)
    assert np.array_equal(d_fd, d_pc)


def test_to_clouds_checks_loaded_values(tmp_path: Path, rng: np.random.Generator) -> None:
    fd = make_fd(rng, [2, 2])
    fd.save(tmp_path / "fd")
    shard = tmp_path / "fd" / "shard-00000.safetensors"
    tensors, meta = read_safetensors(shard, mmap=False)
    tensors["points"][3, 1] = np.nan
    write_safetensors(shard, tensors, meta)
    manifest_path = tmp_path / "fd" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"][0]["bytes"] = shard.stat().st_size
    manifest_path.write_text(json.dumps(manifest))
    # By default the shard's SHA-256 is compared first; without it, the values are checked.
    with pytest.raises(CorruptFileError, match=r"shard-00000.*SHA-256"):
        FeatureDistributions.load(tmp_path / "fd").to_clouds()
    back = FeatureDistributions.load(tmp_path / "fd", verify=False)
    with pytest.raises(CorruptFileError, match=r"shard-00000.*id 8, point 1"):
        back.to_clouds()
    with pytest.raises(CorruptFileError, match="SHA-256"):
        back.verify()


# ---------------------------------------------------------------- corruption


@pytest.fixture
def saved(tmp_path: Path, rng: np.random.Generator) -> Path:
    make_fd(rng, SIZES).save(tmp_path / "fd", shard_size=4)
    return tmp_path / "fd"


def edit_manifest(root: Path, change: Any) -> None:
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_truncated_shard(saved: Path) -> None:
    shard = saved / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(CorruptFileError, match=r"shard-00001\.safetensors.*bytes"):
        FeatureDistributions.load(saved)


def test_flipped_byte_found_by_verify(saved: Path) -> None:
    shard = saved / "shard-00002.safetensors"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x40
    shard.write_bytes(bytes(data))
    back = FeatureDistributions.load(saved)  # same size: loads
    with pytest.raises(CorruptFileError, match=r"shard-00002\.safetensors.*SHA-256"):
        back.verify()


def test_bad_json_manifest(saved: Path) -> None:
    (saved / "manifest.json").write_text('{"format": ')
    with pytest.raises(CorruptFileError, match=r"manifest\.json.*not valid JSON"):
        FeatureDistributions.load(saved)


def test_wrong_schema_version(saved: Path) -> None:
    edit_manifest(saved, lambda m: m.update(schema_version=2))
    with pytest.raises(
        CorruptFileError, match=r"manifest\.json.*schema_version 2.*reads schema_version 1"
    ):
        FeatureDistributions.load(saved)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m: m.pop("dim"), r"missing keys \['dim'\]"),
        (lambda m: m.update(extra=1), r"unknown keys \['extra'\]"),
        (lambda m: m.update(format="other"), "format"),
        (lambda m: m["shards"][0].update(features=[0, 5]), "features"),
        (lambda m: m.update(n_points=3), "n_points"),
    ],
)
def test_bad_manifest_content(saved: Path, change: Any, expected: str) -> None:
    edit_manifest(saved, change)
    with pytest.raises(CorruptFileError, match=expected) as info:
        FeatureDistributions.load(saved)
    assert "manifest.json" in str(info.value)


def test_missing_shard(saved: Path) -> None:
    (saved / "shard-00002.safetensors").unlink()
    with pytest.raises(CorruptFileError, match=r"shard-00002\.safetensors.*missing"):
        FeatureDistributions.load(saved)


def test_shard_size_differs_from_manifest(saved: Path) -> None:
    edit_manifest(saved, lambda m: m["shards"][0].update(bytes=m["shards"][0]["bytes"] + 8))
    with pytest.raises(CorruptFileError, match=r"shard-00000\.safetensors.*manifest\.json says"):
        FeatureDistributions.load(saved)


def test_shard_inconsistent_with_manifest(saved: Path) -> None:
    edit_manifest(saved, lambda m: m.update(dim=5))
    with pytest.raises(CorruptFileError, match=r"shard-00000\.safetensors.*dim 5"):
        FeatureDistributions.load(saved)

    def move_boundary(m: dict[str, Any]) -> None:
        m["dim"] = 3
        m["shards"][0]["features"] = [0, 3]
        m["shards"][1]["features"] = [3, 8]

    edit_manifest(saved, move_boundary)
    with pytest.raises(CorruptFileError, match=r"shard-00000\.safetensors.*holds 4 features"):
        FeatureDistributions.load(saved)


def test_shard_swapped_for_garbage(saved: Path) -> None:
    shard = saved / "shard-00000.safetensors"
    size = shard.stat().st_size
    shard.write_bytes(struct.pack("<Q", 2) + b"[]" + b"\0" * (size - 10))
    with pytest.raises(CorruptFileError, match=r"shard-00000\.safetensors.*not an object"):
        FeatureDistributions.load(saved)


def test_killed_write_leaves_no_loadable_directory(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    fd = make_fd(rng, SIZES)
    real_write = format_mod.write_safetensors
    calls = []

    def dying_write(*args: Any, **kw: Any) -> Any:
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(args[0])
        return real_write(*args, **kw)

    monkeypatch.setattr(format_mod, "write_safetensors", dying_write)
    with pytest.raises(KeyboardInterrupt):
        fd.save(tmp_path / "fd", shard_size=3)
    monkeypatch.undo()
    assert (tmp_path / "fd" / "shard-00000.safetensors").exists()
    with pytest.raises(CorruptFileError, match=r"manifest\.json: missing.*did not finish"):
        FeatureDistributions.load(tmp_path / "fd")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        fd.save(tmp_path / "fd", shard_size=3)
    fd.save(tmp_path / "fd", shard_size=3, overwrite=True)
    assert_same(fd, FeatureDistributions.load(tmp_path / "fd"))


def test_overwrite_removes_stale_shards(tmp_path: Path, rng: np.random.Generator) -> None:
    fd = make_fd(rng, SIZES, reference_arrays={"m": np.zeros(2)})
    fd.save(tmp_path / "fd", shard_size=2)
    for name in ("notes.txt", "notes.tmp-1", "shard-00009.safetensors.tmp-123"):
        (tmp_path / "fd" / name).write_text("x")
    small = make_fd(rng, [1, 2])
    small.save(tmp_path / "fd", overwrite=True)
    names = sorted(p.name for p in (tmp_path / "fd").iterdir())
    assert names == ["manifest.json", "notes.tmp-1", "notes.txt", "shard-00000.safetensors"]
    assert_same(small, FeatureDistributions.load(tmp_path / "fd"))
    with pytest.raises(FileNotFoundError):
        FeatureDistributions.load(tmp_path / "nowhere")


# ---------------------------------------------------------------- validation


def _bump(arrays: dict[str, Any], name: str, index: Any, value: Any) -> None:
    arr = np.array(arrays[name])
    arr[index] = value
    arrays[name] = arr


BAD_INPUTS = {
    "offsets": (lambda a: _bump(a, "offsets", 2, 1), r"offsets: must be non-decreasing; feature 1"),
    "duplicate_ids": (lambda a: _bump(a, "feature_ids", 3, 1), r"id 1 appears twice.*0 and 3"),
    "counts": (lambda a: _bump(a, "firing_counts", 2, 3), r"firing_counts: feature 2 \(id 15\)"),
    "fired_empty": (lambda a: _bump(a, "firing_counts", 1, 4), r"feature 1 \(id 8\) fired 4"),
    "points": (lambda a: _bump(a, "points", (3, 0), np.inf), r"points: feature 2.*point 1"),
    "weights": (lambda a: _bump(a, "weights", 0, -0.5), r"weights: feature 0 .*negative"),
    "weight_sums": (lambda a: _bump(a, "weights", 0, 0.9), r"weights: feature 0 .*sum"),
    "n_tokens": (lambda a: a["metadata"].update(n_tokens=2), r"more than metadata\['n_tokens'\]"),
    "shape": (lambda a: a.update(keys=np.zeros(3)), r"keys: expected shape \(17,\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_from_arrays_validation(rng: np.random.Generator, case: str) -> None:
    arrays = make_arrays(rng, SIZES)
    change, expected = BAD_INPUTS[case]
    change(arrays)
    with pytest.raises(ValueError, match=expected):
        FeatureDistributions.from_arrays(**arrays)


def test_from_arrays_types(rng: np.random.Generator) -> None:
    arrays = make_arrays(rng, [1, 2])
    arrays["seq"] = arrays["seq"].astype(np.float64)
    with pytest.raises(TypeError, match="seq"):
        FeatureDistributions.from_arrays(**arrays)
    arrays = make_arrays(rng, [1, 2])
    arrays["metadata"] = {"x": float("nan")}
    with pytest.raises(ValueError, match="JSON"):
        FeatureDistributions.from_arrays(**arrays)
    arrays = make_arrays(rng, [1, 2])
    arrays["metadata"] = {"n_tokens": np.int64(1000), "layers": np.arange(2)}
    fd = FeatureDistributions.from_arrays(**arrays)
    assert fd.metadata == {"n_tokens": 1000, "layers": [0, 1]} and fd.n_tokens == 1000
    assert fd.cloud(0)[0].dtype == np.float32 and not fd.cloud(0)[0].flags.writeable
    fd.verify()  # in memory: nothing to hash, values already checked


def test_as_clouds_takes_objects_with_to_clouds(rng: np.random.Generator) -> None:
    class Wrong:
        def to_clouds(self) -> str:
            return "nope"

    with pytest.raises(TypeError, match=r"A: Wrong\.to_clouds\(\) returned str"):
        as_clouds(Wrong(), "A")
    fd = make_fd(rng, [2, 3])
    clouds = as_clouds(fd, "A")
    assert clouds.sizes.tolist() == [2, 3]


# ---------------------------------------------------------------- property


@st.composite
def csr_contents(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    sizes = draw(st.lists(st.integers(0, 4), min_size=0, max_size=9))
    dim = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    shard_size = draw(st.integers(1, 5))
    rng = np.random.default_rng(seed)
    arrays = make_arrays(rng, sizes, dim=dim, mode=draw(st.sampled_from(["weighted", "top"])))
    arrays["feature_ids"] = rng.permutation(10**6)[: len(sizes)].astype(np.int64) - 1000
    arrays["points"] *= np.float32(draw(st.sampled_from([1e-30, 1.0, 1e30])))
    arrays["keys"][:1] = draw(st.sampled_from([0.0, -0.0, np.inf, 5e-324]))
    return arrays, shard_size


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(csr_contents())
def test_property_random_csr_round_trip(contents: tuple[dict[str, Any], int]) -> None:
    arrays, shard_size = contents
    fd = FeatureDistributions.from_arrays(**arrays)
    with tempfile.TemporaryDirectory() as tmp:
        fd.save(Path(tmp) / "fd", shard_size=shard_size)
        back = FeatureDistributions.load(Path(tmp) / "fd")
        assert_same(fd, back)
        for i in range(len(back)):
            lo, hi = arrays["offsets"][i], arrays["offsets"][i + 1]
            # bit-exact, signed zeros and subnormals included
            assert back.keys(i).tobytes() == np.asarray(arrays["keys"][lo:hi]).tobytes()
            assert back.cloud(i)[0].tobytes() == arrays["points"][lo:hi].tobytes()
        del back
