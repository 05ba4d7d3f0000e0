"""Bad stored data, as a hostile user or a failing disk makes it: every case a clear error.

One parametrized suite per layer of storage: FeatureDistributions directories (flipped
bytes, symbolic links out, deep JSON), run records, safetensors headers, attribution
graphs, and the resume records of the Dask outputs (truncated, corrupted, lying records),
where a rerun must give the uninterrupted result bit for bit.
"""

from __future__ import annotations

import json
import os
import re
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import semot
from semot._utils.jsondepth import MAX_JSON_DEPTH, json_depth_problem, object_depth_problem
from semot._utils.safetensors import read_header, write_safetensors
from semot.circuits.graph import AttributionGraph
from semot.collection.run import load_run
from semot.errors import CorruptFileError, DamagedOutputWarning, GraphFormatError
from semot.features.container import FeatureDistributions
from semot.features.runs import write_run_record

from conftest import optional_import

pytestmark = pytest.mark.filterwarnings("ignore::semot.errors.UnfiredFeaturesWarning")

SIZES = [3, 2, 0, 4, 1, 2]  # six features, shards of two: three shard files
DEEP = 5000  # deep enough for RecursionError in json, deepcopy and json.dumps


def make_fd(seed: int = 0, sizes: list[int] = SIZES, d: int = 3) -> FeatureDistributions:
    rng = np.random.default_rng(seed)
    sizes_a = np.asarray(sizes)
    total = int(sizes_a.sum())
    offsets = np.concatenate([[0], np.cumsum(sizes_a)])
    weights = np.concatenate([np.full(m, 1.0 / m) for m in sizes if m])
    return FeatureDistributions.from_arrays(
        points=rng.normal(size=(total, d)), weights=weights, activations=rng.random(total) + 0.1,
        keys=rng.random(total), seq=np.arange(total), pos=np.zeros(total, int), offsets=offsets,
        feature_ids=np.arange(len(sizes)) * 10 + seed, firing_counts=sizes_a * 2,
        activation_sums=sizes_a * 1.5, metadata={"n_tokens": 1000},
        reference_arrays={"center": np.zeros(d)},
    )  # fmt: skip


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    make_fd().save(tmp_path / "fd", shard_size=2)
    return tmp_path / "fd"


def tensor_span(file: Path, name: str) -> tuple[int, int]:
    """Absolute byte range of tensor ``name`` in a safetensors file."""
    start, header, _ = read_header(file)
    lo, hi = header[name]["data_offsets"]
    return start + lo, start + hi


def flip(file: Path, pos: int, mask: int = 0x01) -> None:
    blob = bytearray(file.read_bytes())
    blob[pos] ^= mask
    file.write_bytes(bytes(blob))


def read_everything(path: Path, **kw: Any) -> FeatureDistributions:
    """Load and read every array (the reads that run the lazy SHA-256 checks)."""
    fd = FeatureDistributions.load(path, **kw)
    fd.feature_ids, fd.sample_sizes  # noqa: B018 - reads
    fd.to_clouds()
    return fd


def deep_json(depth: int) -> Any:
    data: Any = 0
    for _ in range(depth):
        data = [data]
    return data


def deep_text(depth: int) -> str:
    """JSON text nested ``depth`` arrays deep (json.dumps itself cannot write it)."""
    return "[" * depth + "0" + "]" * depth


def with_deep(data: dict[str, Any], put: Any, depth: int) -> str:
    """``json.dumps(data)`` with the value set by ``put(data, marker)`` nested ``depth`` deep."""
    put(data, "@DEEP@")
    return json.dumps(data).replace('"@DEEP@"', deep_text(depth))


# ---------------------------------------------------------------- shards: flipped bytes


@pytest.mark.parametrize(
    "where", ["points", "weights", "feature_ids", "offsets", "firing_counts", "header", "length"]
)
@pytest.mark.parametrize("mmap", [True, False])
def test_a_flipped_byte_is_an_error_naming_the_shard(saved: Path, where: str, mmap: bool) -> None:
    shard = saved / "shard-00001.safetensors"
    if where == "header":
        pos = 8 + 3  # inside the JSON header
    elif where == "length":
        pos = 5  # the 8-byte header length: claims a huge header
    else:
        lo, _ = tensor_span(shard, where)
        pos = lo + 1
    flip(shard, pos, 0x40 if where in ("header", "length") else 0x01)
    with pytest.raises(CorruptFileError, match=re.escape(str(shard))):
        read_everything(saved, mmap=mmap)


def test_the_sha256_check_is_lazy_and_verify_false_opts_out(saved: Path) -> None:
    shard = saved / "shard-00002.safetensors"
    lo, _ = tensor_span(shard, "points")
    flip(shard, lo + 2)  # a mantissa bit: a finite, plausible, wrong coordinate
    fd = FeatureDistributions.load(saved)  # loading reads structure only: no error yet
    assert len(fd) == 6
    fd[:4].to_clouds()  # shards 0 and 1 are intact
    with pytest.raises(CorruptFileError, match=r"shard-00002.*SHA-256.*verify=False"):
        fd[4:].to_clouds()
    with pytest.raises(CorruptFileError, match="shard-00002"):  # and again: never the data
        fd.cloud(5)
    trusted = FeatureDistributions.load(saved, verify=False)
    pts, _ = trusted.cloud(4)
    want, _ = make_fd().cloud(4)
    assert pts.shape == want.shape and not np.array_equal(pts, want)  # the silent change
    with pytest.raises(CorruptFileError, match="SHA-256"):
        trusted.verify()


def test_a_loaded_object_pickles_with_its_pending_checks(saved: Path) -> None:
    import pickle

    back = pickle.loads(pickle.dumps(FeatureDistributions.load(saved)))
    assert np.array_equal(back.cloud(3)[0], make_fd().cloud(3)[0])
    shard = saved / "shard-00000.safetensors"
    flip(shard, tensor_span(shard, "points")[0])
    damaged = pickle.loads(pickle.dumps(FeatureDistributions.load(saved)))
    with pytest.raises(CorruptFileError, match="shard-00000"):
        damaged.cloud(0)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_flipped_byte_of_any_shard_is_caught(saved: Path, data: st.DataObject) -> None:
    files = sorted(saved.glob("shard-*.safetensors"))
    file = data.draw(st.sampled_from(files))
    blob = file.read_bytes()
    pos = data.draw(st.integers(0, len(blob) - 1))
    mask = data.draw(st.integers(1, 255))
    flip(file, pos, mask)
    try:
        with pytest.raises(CorruptFileError, match=re.escape(file.name)):
            read_everything(saved, mmap=data.draw(st.booleans()))
    finally:
        file.write_bytes(blob)


# ---------------------------------------------------------------- files that lead outside


def test_a_shard_linked_from_outside_is_refused_one_inside_is_read(saved: Path) -> None:
    shard = saved / "shard-00001.safetensors"
    outside = saved.parent / "elsewhere.safetensors"
    os.replace(shard, outside)
    shard.symlink_to(outside)
    with pytest.raises(CorruptFileError, match=r"shard-00001.*symbolic link.*outside"):
        FeatureDistributions.load(saved)
    # A link to a file inside the directory is the directory's own data.
    (saved / "sub").mkdir()
    os.replace(outside, saved / "sub" / "s1")
    shard.unlink()
    shard.symlink_to(saved / "sub" / "s1")
    back = read_everything(saved)
    assert np.array_equal(back.cloud(2)[0], make_fd().cloud(2)[0])


@pytest.mark.parametrize("name", ["manifest.json", "reference.safetensors"])
def test_manifest_and_reference_linked_from_outside_are_refused(saved: Path, name: str) -> None:
    target = saved.parent / f"copy-{name}"
    os.replace(saved / name, target)
    (saved / name).symlink_to(target)
    with pytest.raises(CorruptFileError, match=rf"{re.escape(name)}.*outside"):
        FeatureDistributions.load(saved)


@pytest.mark.parametrize("file", ["../fd-other/shard-00000.safetensors", "/etc/passwd", "a/b"])
def test_manifest_file_names_with_a_path_are_refused(saved: Path, file: str) -> None:
    path = saved / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["shards"][0]["file"] = file
    path.write_text(json.dumps(manifest))
    with pytest.raises(CorruptFileError, match=r"manifest\.json.*plain file name"):
        FeatureDistributions.load(saved)


def make_run(tmp_path: Path) -> Path:
    root = tmp_path / "run"
    for seed, name in ((0, "layer0"), (1, "layer1")):
        make_fd(seed).save(root / name, shard_size=4)
    make_fd(2).save(tmp_path / "other-run-site", shard_size=4)
    write_run_record(root, {"layer0": "layer0", "layer1": "layer1"}, {"source": "test"})
    return root


@pytest.mark.parametrize(
    ("sites", "entry"),
    [
        ({"../other-run-site": "../other-run-site"}, "../other-run-site"),
        ({"/etc": "/etc"}, "/etc"),
        ({"layer0": "../other-run-site"}, "layer0"),
        ({"layer0": "/tmp"}, "layer0"),
        ({"a/b": "a/b"}, "a/b"),
        ({"..": ".."}, ".."),
        ({"layer0": 3}, "layer0"),
    ],
)
def test_run_json_sites_outside_the_run_are_refused(
    tmp_path: Path, sites: dict[str, Any], entry: str
) -> None:
    root = make_run(tmp_path)
    (root / "run.json").write_text(json.dumps({"sites": sites, "config": {}}))
    with pytest.raises(CorruptFileError, match=rf"run\.json: site {re.escape(repr(entry))}"):
        load_run(root)


def test_run_site_linked_outside_is_refused_and_a_plain_run_loads(tmp_path: Path) -> None:
    root = make_run(tmp_path)
    runs = load_run(root)
    assert sorted(runs) == ["layer0", "layer1"]
    assert np.array_equal(runs["layer1"].feature_ids, make_fd(1).feature_ids)
    os.rename(root / "layer1", tmp_path / "moved")
    (root / "layer1").symlink_to(tmp_path / "moved")
    with pytest.raises(CorruptFileError, match=r"site 'layer1'.*symbolic link.*outside"):
        load_run(root)


@pytest.mark.parametrize("record", ["{", "[1, 2]", '{"sites": []}', deep_text(DEEP)])
def test_unreadable_run_records(tmp_path: Path, record: str) -> None:
    root = make_run(tmp_path)
    (root / "run.json").write_text(record)
    with pytest.raises(CorruptFileError, match=r"run\.json: unreadable run record"):
        load_run(root)


# ---------------------------------------------------------------- deep JSON


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, DEEP])
def test_deep_metadata_in_a_manifest_is_a_format_error(saved: Path, depth: int) -> None:
    path = saved / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(with_deep(manifest, lambda m, v: m["metadata"].update(deep=v), depth))
    with pytest.raises(CorruptFileError, match=r"manifest\.json.*nested more than 100 levels"):
        FeatureDistributions.load(saved)


def test_deep_metadata_given_to_from_arrays_is_a_value_error() -> None:
    fd = make_fd()
    with pytest.raises(ValueError, match=r"metadata: JSON nested more than 100"):
        FeatureDistributions.from_arrays(
            **{k: getattr(fd, k) for k in ("feature_ids", "firing_counts", "activation_sums")},
            points=np.zeros((0, 2)), weights=[], activations=[], keys=[], seq=[], pos=[],
            offsets=np.zeros(7, int), metadata={"deep": deep_json(DEEP)},
        )  # fmt: skip


def write_raw_safetensors(path: Path, header: bytes, data: bytes = b"") -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (with_deep({"__metadata__": {}}, lambda h, v: h.update(x=v), DEEP).encode(), "nested"),
        (b"[" * 200 + b"]" * 200, "nested more than"),
        (b'{"x": "' + b"[" * 300 + b'"}', "expected an object with dtype"),  # brackets in text
    ],
)
def test_safetensors_headers_nested_deep(tmp_path: Path, header: bytes, match: str) -> None:
    write_raw_safetensors(tmp_path / "t.safetensors", header)
    with pytest.raises(CorruptFileError, match=match):
        read_header(tmp_path / "t.safetensors")


def test_a_safetensors_header_size_of_a_terabyte_is_refused_not_allocated(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(CorruptFileError, match="more than the 100000000"):
        read_header(path)
    write_safetensors(path, {"a": np.arange(3)})  # and a normal one still reads
    assert read_header(path)[1]["a"]["shape"] == [3]


def small_graph() -> dict[str, Any]:
    nodes = [
        {"node_id": f"{layer}_{f}_0", "feature": f, "layer": str(layer), "ctx_idx": 0,
         "feature_type": "cross layer transcoder", "clerp": f"f{f}"}
        for layer, f in ((0, 1), (1, 2))
    ]  # fmt: skip
    nodes.append({"node_id": "E_1_0", "feature_type": "embedding", "layer": "E", "ctx_idx": 0})
    links = [{"source": "E_1_0", "target": "0_1_0", "weight": 1.0}]
    return {"metadata": {"slug": "g"}, "qParams": {}, "nodes": nodes, "links": links}


def test_small_graph_is_valid() -> None:
    assert AttributionGraph.from_dict(small_graph()).n_nodes == 3


@pytest.mark.parametrize("depth", [150, DEEP])
def test_deep_graph_json_is_a_graph_format_error(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "g.json"
    path.write_text(with_deep(small_graph(), lambda g, v: g["metadata"].update(info=v), depth))
    with pytest.raises(GraphFormatError, match=r"g\.json: JSON nested more than 100"):
        AttributionGraph.load(path)
    graph = small_graph()
    graph["metadata"]["info"] = deep_json(depth)
    with pytest.raises(GraphFormatError, match="nested more than 100"):
        AttributionGraph.from_dict(graph)


def test_a_graph_dict_that_contains_itself_is_a_graph_format_error() -> None:
    graph = small_graph()
    graph["metadata"]["self"] = graph
    with pytest.raises(GraphFormatError, match="nested more than"):
        AttributionGraph.from_dict(graph)


def true_depth(x: Any) -> int:
    """Plain recursive reference: the nesting depth of arrays and objects."""
    if isinstance(x, dict):
        return 1 + max((true_depth(v) for v in x.values()), default=0)
    if isinstance(x, list):
        return 1 + max((true_depth(v) for v in x), default=0)
    return 0


tricky_text = st.text(alphabet='[]{}"\\ab,:', max_size=8)
json_values = st.recursive(
    st.none() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(value=json_values, limit=st.integers(0, 8), indent=st.sampled_from([None, 1]))
def test_json_depth_scan_equals_the_recursive_depth(value: Any, limit: int, indent: Any) -> None:
    text = json.dumps(value, indent=indent)
    deep = true_depth(value) > limit
    assert (json_depth_problem(text, limit) is not None) == deep
    assert (json_depth_problem(text.encode(), limit) is not None) == deep
    assert (object_depth_problem(value, limit) is not None) == deep


# ---------------------------------------------------------------- to_clouds names the file


def test_to_clouds_names_the_shard_also_when_it_gathers_several(saved: Path) -> None:
    shard = saved / "shard-00001.safetensors"
    lo, _ = tensor_span(shard, "points")
    blob = bytearray(shard.read_bytes())
    blob[lo : lo + 4] = np.float32(np.nan).tobytes()
    shard.write_bytes(bytes(blob))
    fd = FeatureDistributions.load(saved, verify=False)
    for part in (fd, fd[[0, 3, 5]], fd.select([30, 0])):  # several shards: a gathered copy
        with pytest.raises(
            CorruptFileError, match=r"shard-00001\.safetensors: points: feature id 30"
        ):
            part.to_clouds()


# ---------------------------------------------------------------- resume records (Dask)


distributed = optional_import("distributed")
import semot.distributed as sd  # noqa: E402 - needs the optional import above


@pytest.fixture(scope="module")
def client() -> Any:
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as c,
    ):
        yield c


def clouds(seed: int, n: int) -> semot.PointClouds:
    rng = np.random.default_rng(seed)
    return semot.PointClouds.from_padded(rng.normal(size=(n, 6, 3)), rng.random((n, 6)) + 0.1)


A, B = clouds(1, 30), clouds(2, 25)
KW: dict[str, Any] = dict(n_projections=8, seed=0, block_size=8, progress=False)
WANT = semot.sliced_wasserstein_cdist(A, B, n_projections=8, seed=0)
N_BLOCKS = 16  # 4 x 4 tiles of 8


def finished_run(client: Any, tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "D.npy"
    got = sd.sliced_wasserstein_cdist(A, B, client=client, out=out, **KW)
    assert np.array_equal(got, WANT)
    return out, tmp_path / "D.npy.semot.json"


def rerun(client: Any, out: Path) -> Any:
    return sd.sliced_wasserstein_cdist(A, B, client=client, out=out, **KW)


def truncate_half(out: Path, record: Path) -> None:
    os.truncate(out, out.stat().st_size // 2)


def truncate_to_zero_data(out: Path, record: Path) -> None:
    header = out.stat().st_size - WANT.nbytes
    os.truncate(out, header)


def extend(out: Path, record: Path) -> None:
    with open(out, "ab") as f:
        f.write(b"\x7f" * 1000)


def zero_every_block(out: Path, record: Path) -> None:
    """A kill before the data reached the disk: the record says done, the file has zeros."""
    mm = np.load(out, mmap_mode="r+")
    mm[:] = 0.0
    mm.flush()


def flip_one_value(out: Path, record: Path) -> None:
    flip(out, out.stat().st_size - WANT.nbytes + 8 * 40 + 3)


def lie_about_a_checksum(out: Path, record: Path) -> None:
    data = json.loads(record.read_text())
    data["checksums"]["5"] = (data["checksums"]["5"] + 1) % 2**32
    record.write_text(json.dumps(data))


def claim_blocks_never_written(out: Path, record: Path) -> None:
    """Blocks recorded as done without a checksum (a record of semot 0.1, or edited)."""
    data = json.loads(record.read_text())
    del data["checksums"]["2"], data["checksums"]["7"]
    record.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("damage", "n_bad", "size_warning"),
    [
        (truncate_half, None, True),
        (truncate_to_zero_data, N_BLOCKS, True),
        (extend, 0, True),
        (zero_every_block, N_BLOCKS, False),
        (flip_one_value, 1, False),
        (lie_about_a_checksum, 1, False),
        (claim_blocks_never_written, 2, False),
    ],
)
def test_a_damaged_resumed_output_is_recomputed_bit_for_bit(
    client: Any, tmp_path: Path, damage: Any, n_bad: int | None, size_warning: bool
) -> None:
    out, record = finished_run(client, tmp_path)
    damage(out, record)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = rerun(client, out)
    assert np.array_equal(got, WANT)
    assert got.dtype == np.float64 and out.stat().st_size == 128 + WANT.nbytes
    messages = [str(w.message) for w in caught if issubclass(w.category, DamagedOutputWarning)]
    assert any("bytes instead of" in m for m in messages) == size_warning
    recomputed = [m for m in messages if "recorded as finished" in m]
    if n_bad == 0:
        assert not recomputed
    elif n_bad is not None:
        assert recomputed and recomputed[0].startswith(f"out {out}: {n_bad} of the {N_BLOCKS}")
    # The record now tells the truth: a third run recomputes nothing and warns nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedOutputWarning)
        assert np.array_equal(rerun(client, out), WANT)


def test_a_partial_run_resumes_and_a_bad_block_in_it_is_recomputed(
    client: Any, tmp_path: Path
) -> None:
    out, record = finished_run(client, tmp_path)
    data = json.loads(record.read_text())
    data["done"] = [0, 1, 2, 9]  # as if killed after four blocks
    record.write_text(json.dumps(data))
    mm = np.load(out, mmap_mode="r+")
    mask = np.ones(WANT.shape, bool)
    mask[:8, :8] = mask[:8, 8:16] = mask[:8, 16:24] = mask[16:24, 8:16] = False
    mm[mask] = 0.0  # the blocks not done were never written
    mm[0, 9] = 1.0  # and block 1 was damaged since
    mm.flush()
    del mm
    seen: list[int] = []
    with pytest.warns(DamagedOutputWarning, match="1 of the 4 blocks"):
        got = sd.sliced_wasserstein_cdist(
            A, B, client=client, out=out, **{**KW, "progress": lambda d, t: seen.append(d)}
        )
    assert np.array_equal(got, WANT)
    assert seen == list(range(4, N_BLOCKS + 1))  # 13 blocks computed: 3 of the 4 were kept


@pytest.mark.parametrize(
    "record_text",
    [
        "{not json",
        "[]",
        json.dumps({"fingerprint": [], "done": []}),
        json.dumps({"fingerprint": {}, "done": "all"}),
        json.dumps({"fingerprint": {}, "done": [0], "checksums": {"0": "x"}}),
        json.dumps({"fingerprint": {}, "done": [-1]}),
        deep_text(DEEP),
    ],
)
def test_an_unreadable_record_is_refused_naming_overwrite(
    client: Any, tmp_path: Path, record_text: str
) -> None:
    out, record = finished_run(client, tmp_path)
    record.write_text(record_text)
    with pytest.raises(ValueError, match=r"record .* is unreadable .*pass overwrite=True"):
        rerun(client, out)
    got = sd.sliced_wasserstein_cdist(A, B, client=client, out=out, overwrite=True, **KW)
    assert np.array_equal(got, WANT)


def test_a_damaged_header_or_a_lying_size_is_refused(client: Any, tmp_path: Path) -> None:
    out, record = finished_run(client, tmp_path)
    data = json.loads(record.read_text())
    data["out_bytes"] += 8
    record.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"record says .* bytes but its header describes"):
        rerun(client, out)
    os.truncate(out, 20)  # not even a header
    with pytest.raises(ValueError, match=r"\.npy header is unreadable.*overwrite=True"):
        rerun(client, out)


def test_top_k_checkpoint_blocks_damaged_are_recomputed(client: Any, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    want = sd.sliced_wasserstein_cdist(A, B, client=client, top_k=3, **KW)

    def interrupt(done: int, total: int) -> None:
        if done >= 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sd.sliced_wasserstein_cdist(
            A, B, client=client, top_k=3, checkpoint=ckpt, **{**KW, "progress": interrupt}
        )
    files = sorted(ckpt.glob("block-*.npz"))
    assert len(files) >= 6
    files[0].write_bytes(files[0].read_bytes()[:-10])  # truncated
    flip(files[1], len(files[1].read_bytes()) // 2)
    with pytest.warns(DamagedOutputWarning, match=r"2 of the \d+ blocks"):
        got = sd.sliced_wasserstein_cdist(A, B, client=client, top_k=3, checkpoint=ckpt, **KW)
    assert np.array_equal(got.indices, want.indices)
    assert np.array_equal(got.distances, want.distances)


# ---------------------------------------------------------------- collection checkpoints


@pytest.mark.parametrize(
    ("pointer", "match"),
    [
        ("[" * DEEP, "unreadable checkpoint .*nested more than"),
        (b"\xff\xfe", "unreadable checkpoint"),
        ('{"state_file": "../../etc/passwd"}', "not a plain file name"),
        ('{"state_file": "/etc/passwd"}', "not a plain file name"),
        ('{"state_file": 3}', "not a plain file name"),
    ],
)
def test_a_corrupt_collection_checkpoint_pointer_is_refused(
    tmp_path: Path, pointer: str | bytes, match: str
) -> None:
    from semot.collection.checkpoint import Checkpoint

    ckpt = Checkpoint(tmp_path)
    ckpt.dir.mkdir()
    if isinstance(pointer, bytes):
        ckpt.pointer.write_bytes(pointer)
    else:
        ckpt.pointer.write_text(pointer)
    with pytest.raises(CorruptFileError, match=match):
        ckpt.read()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("layer", 2**63, r"node 0 .*'layer' must be an integer .* int64"),
        ("layer", str(-(2**63) - 1), r"'layer' must be an integer .* int64"),
        ("ctx_idx", 2**64, r"'ctx_idx' must be a non-negative integer below 2\*\*63"),
    ],
)
def test_graph_integers_beyond_int64_name_the_node(field: str, value: Any, message: str) -> None:
    graph = small_graph()
    graph["nodes"][0][field] = value
    with pytest.raises(GraphFormatError, match=message):
        AttributionGraph.from_dict(graph)
    graph = small_graph()
    graph["nodes"][0]["node_id"] = f"0_{2**64}_0"
    with pytest.raises(GraphFormatError, match="feature index 18446744073709551616 is beyond"):
        AttributionGraph.from_dict(graph)
