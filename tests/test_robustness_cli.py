"""The CLI speaks in one line: every bad input is ``semot <cmd>: error: ...`` and exit 2.

A parametrized suite of bad command lines (missing and wrong-kind paths, unwritable
outputs, corrupt and escaping data, malformed flag values, an unreachable scheduler), run
in-process through :func:`semot.cli.main`, each asserting one line on stderr, no traceback,
exit status 2 and a message that names the flag or the file; subprocesses only where the
problem shows at interpreter exit (a Dask client's ``__del__``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import semot
from semot.cli.app import EXIT_ERROR, flag_message, main
from semot.errors import SemotWarning
from semot.features.container import FeatureDistributions
from semot.features.runs import write_run_record

pytestmark = pytest.mark.filterwarnings("ignore::semot.errors.UnfiredFeaturesWarning")


def make_fd(seed: int, n_features: int = 6, m: int = 4, d: int = 3) -> FeatureDistributions:
    rng = np.random.default_rng(seed)
    total = n_features * m
    return FeatureDistributions.from_arrays(
        points=rng.normal(size=(total, d)), weights=np.full(total, 1.0 / m),
        activations=np.ones(total), keys=rng.random(total), seq=np.arange(total),
        pos=np.zeros(total, int), offsets=np.arange(0, total + 1, m),
        feature_ids=np.arange(n_features), firing_counts=np.full(n_features, m),
        activation_sums=np.full(n_features, 2.0), metadata={"n_tokens": 100, "hook": f"h{seed}"},
    )  # fmt: skip


GRAPH = {
    "metadata": {"slug": "g", "prompt_tokens": ["a"]},
    "qParams": {},
    "nodes": [
        {"node_id": f"{layer}_{f}_0", "feature": f, "layer": str(layer), "ctx_idx": 0,
         "feature_type": "cross layer transcoder", "clerp": f"f{f}"}
        for layer, f in ((0, 1), (0, 2), (1, 3))
    ],
    "links": [{"source": "0_1_0", "target": "1_3_0", "weight": 1.0},
              {"source": "0_2_0", "target": "1_3_0", "weight": 0.5}],
}  # fmt: skip


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("cli")
    make_fd(0).save(tmp / "site")
    run = tmp / "run"
    make_fd(1).save(run / "layer0")
    make_fd(2).save(run / "layer1")
    write_run_record(run, {"layer0": "layer0", "layer1": "layer1"}, {})
    escaping = tmp / "escaping"
    make_fd(3).save(escaping / "layer0")
    (escaping / "run.json").write_text(json.dumps({"sites": {"../site": "../site"}}))
    corrupt = tmp / "corrupt"
    make_fd(4).save(corrupt)
    shard = corrupt / "shard-00000.safetensors"
    blob = bytearray(shard.read_bytes())
    blob[-3] ^= 1
    shard.write_bytes(bytes(blob))
    (tmp / "g.json").write_text(json.dumps(GRAPH))
    (tmp / "bad.json").write_text('{"nodes": [1, 2,')
    (tmp / "deep.json").write_text(
        json.dumps(GRAPH).replace('"slug": "g"', '"slug": "g", "x": ' + "[" * 5000 + "]" * 5000)
    )
    (tmp / "file.txt").write_text("not a directory\n")
    (tmp / "dir.npy").mkdir()
    (tmp / "empty").mkdir()
    return {
        "tmp": str(tmp), "site": str(tmp / "site"), "run": str(run), "escaping": str(escaping),
        "corrupt": str(corrupt), "graph": str(tmp / "g.json"), "badjson": str(tmp / "bad.json"),
        "deep": str(tmp / "deep.json"), "file": str(tmp / "file.txt"), "empty": str(tmp / "empty"),
    }  # fmt: skip


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's usage errors
        rc = int(e.code or 0)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_line_error(err: str, command: str, *patterns: str) -> str:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{command}: error: "), lines[0]
    for pattern in patterns:
        assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


CDIST = ["cdist", "{site}", "--from", "site", "--to", "site", "--no-progress"]
COMPRESS = ["compress", "{graph}", "--auto"]
MATCH = ["match", "{run}", "--from", "layer0", "--to", "layer1"]

CASES: list[tuple[list[str], str]] = [
    # missing paths, wrong kinds of path, data that is not what it claims to be
    (["info", "{tmp}/NOPE"], r"NOPE: no such directory"),
    (["info", "{file}"], r"file\.txt: is not a directory"),
    (["info", "{empty}"], r"manifest\.json: missing"),
    (["info", "{corrupt}"], r"shard-00000\.safetensors: SHA-256 .* differs"),
    (["compress", "{tmp}", "--auto", "--out", "{tmp}/o.json"], r": Is a directory"),
    (["compress", "{tmp}/NOPE.json", "--auto", "--out", "{tmp}/o.json"], r"No such file"),
    (["compress", "{badjson}", "--auto", "--out", "{tmp}/o.json"], r"malformed JSON at line 1"),
    (["compress", "{deep}", "--auto", "--out", "{tmp}/o.json"], r"deep\.json: JSON nested more"),
    ([*COMPRESS, "--distributions", "{escaping}", "--out", "{tmp}/o.json"], r"run\.json: site"),
    ([*MATCH[:1], "{tmp}/NOPE", *MATCH[2:], "--out", "{tmp}/m.csv"], r"NOPE: not a directory"),
    ([*MATCH[:1], "{escaping}", *MATCH[2:], "--out", "{tmp}/m.csv"], r"site '\.\./site'"),
    (
        [*MATCH[:1], "{corrupt}", "--from", "corrupt", "--to", "corrupt", "--out", "{tmp}/m.csv"],
        r"shard-00000\.safetensors: SHA-256",
    ),
    (
        [*MATCH[:2], "--from", "nosuch", "--to", "layer1", "--out", "{tmp}/m.csv"],
        r"--from 'nosuch': no such site",
    ),
    # outputs that cannot be written: refused before the work
    ([*COMPRESS, "--out", "{tmp}"], r"--out .*: is a directory, expected a file name"),
    ([*COMPRESS, "--out", "/proc/semot-test.json"], r"--out /proc/semot-test\.json: cannot write"),
    ([*COMPRESS, "--out", "{file}/o.json"], r"--out .*file\.txt is not a directory"),
    ([*COMPRESS, "--out", "{tmp}/o.json", "--report", "{tmp}"], r"--report .*: is a directory"),
    ([*COMPRESS, "--out", "{tmp}/o.json", "--html", "/proc/x.html"], r"--html /proc/x\.html"),
    # the escaping run would fail too: the unwritable output is found first, before loading
    ([*MATCH[:1], "{escaping}", *MATCH[2:], "--out", "/proc/x.csv"], r"--out /proc/x\.csv"),
    ([*MATCH, "--out", "{tmp}/m.txt"], r"--out .*: expected a \.csv or \.parquet"),
    ([*CDIST, "--out", "{tmp}/dir.npy"], r"--out .*dir\.npy: is a directory"),
    ([*CDIST, "--out", "/proc/D.npy"], r"--out /proc/D\.npy: cannot write"),
    ([*CDIST, "--out", "{tmp}/D.txt"], r"--out .*: expected a \.npy or \.zarr"),
    (["bench-match", "--out", "{file}"], r"--out .*file\.txt: exists and is not a directory"),
    (["demo", "--out", "{file}"], r"--out .*file\.txt: exists and is not a directory"),
    # flag values, checked by argparse types
    (
        [*CDIST, "--out", "{tmp}/D.npy", "--timeout", "1-1.0"],
        r"argument --timeout: expected a number of seconds > 0, such as 60 or 2\.5, got '1-1\.0'",
    ),
    ([*CDIST, "--out", "{tmp}/D.npy", "--timeout", "0"], r"argument --timeout"),
    ([*CDIST, "--out", "{tmp}/D.npy", "--timeout", "nan"], r"argument --timeout"),
    (
        [*CDIST, "--out", "{tmp}/D.npy", "--threads", "0"],
        r"argument --threads: expected a positive integer, got 0",
    ),
    (
        [*CDIST, "--out", "{tmp}/D.npy", "--threads", "many"],
        r"argument --threads: expected a positive integer, got 'many'",
    ),
    ([*CDIST, "--out", "{tmp}/D.npy", "--block-size", "-3"], r"argument --block-size"),
    ([*CDIST, "--out", "{tmp}/D.npy", "--top-k", "0"], r"argument --top-k"),
    ([*CDIST, "--out", "{tmp}/D.npy", "--n-projections", "1e3"], r"argument --n-projections"),
    ([*CDIST, "--out", "{tmp}/D.npy", "--reg", "-1"], r"argument --reg"),
    (
        [*CDIST, "--out", "{tmp}/D.npy", "--scheduler", "tcp://127.0.0.1"],
        r"argument --scheduler: expected 'local' or a Dask scheduler address",
    ),
    ([*CDIST, "--out", "{tmp}/D.npy", "--scheduler", "bad host:1"], r"argument --scheduler"),
    ([*CDIST, "--out", "{tmp}/D.npy", "--scheduler", "tcp://h:99999"], r"argument --scheduler"),
    ([*CDIST, "--out", "{tmp}/D.npy", "--distance", "sinkhorn"], r"--reg is required"),
    (
        [*COMPRESS, "--out", "{tmp}/o.json", "--layer-window", "-1"],
        r"argument --layer-window: expected a non-negative integer, got -1",
    ),
    ([*COMPRESS, "--out", "{tmp}/o.json", "--layer-window", "two"], r"argument --layer-window"),
    ([*COMPRESS, "--out", "{tmp}/o.json", "--threads", "0"], r"argument --threads"),
    ([*COMPRESS, "--out", "{tmp}/o.json", "--threshold", "1"], r"give one of --threshold"),
    ([*COMPRESS, "--out", "{tmp}/o.json", "--graph-weight", "inf"], r"argument --graph-weight"),
    ([*MATCH, "--out", "{tmp}/m.csv", "--k", "0"], r"argument --k"),
    ([*MATCH, "--out", "{tmp}/m.csv", "--threshold", "nan"], r"--threshold: expected a finite"),
    ([*MATCH, "--out", "{tmp}/m.csv", "--scheduler", "nohostport"], r"argument --scheduler"),
    (
        ["bench-match", "--sizes", "16", "0"],
        r"argument --sizes: expected a positive integer, got 0",
    ),
    (["bench-match", "--sizes", "x"], r"argument --sizes"),
    (["bench-match", "--seeds", "-1"], r"argument --seeds"),
    (["demo", "--n-tokens", "0"], r"argument --n-tokens: expected a positive integer"),
    # semot browse: a run without stored contexts, missing files, a non-directory output
    (["browse", "{run}", "--out", "{tmp}/b"], r"run: .* stores no token contexts .*--tokens"),
    (["browse", "{tmp}/nosuch", "--out", "{tmp}/b"], r"run: .*nosuch is not a directory"),
    (["browse", "{run}", "--tokens", "{tmp}/no.npy", "--out", "{tmp}/b"], r"--tokens .*no\.npy"),
    (["browse", "{run}", "--out", "{file}"], r"--out .*file\.txt: exists and is not a directory"),
    (
        ["browse", "{run}", "--matches", "{tmp}/m.csv", "--out", "{tmp}/b"],
        r"m\.csv: No such file or directory",
    ),
    (["bogus"], r"invalid choice: 'bogus'"),
    ([], r"required: command"),
]


@pytest.mark.parametrize(("argv", "pattern"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], pattern: str, paths: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(**paths) for a in argv]
    rc, _, err = run_cli(args, capsys)
    assert rc == EXIT_ERROR
    command = "semot" if not args or args[0] == "bogus" else f"semot {args[0]}"
    assert_one_line_error(err, command, pattern)
    assert "=True" not in err  # flags, never Python arguments


def test_nothing_is_written_when_the_output_check_fails(
    paths: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = Path(paths["tmp"]) / "never.json"
    rc, _, err = run_cli([*COMPRESS, "--out", str(out), "--report", paths["tmp"]], capsys)
    assert rc == EXIT_ERROR and "--report" in err and not out.exists()
    leftovers = [p.name for p in Path(paths["tmp"]).iterdir() if p.name.startswith(".semot-probe")]
    assert leftovers == []


def test_library_argument_names_become_flags() -> None:
    parser = argparse_of("cdist")
    assert flag_message("out /x/D.npy exists; pass overwrite=True to replace it", parser) == (
        "--out /x/D.npy exists; pass --overwrite to replace it"
    )
    assert flag_message("n_threads: must be at most 512, got 4096", parser) == (
        "--threads: must be at most 512, got 4096"
    )
    assert flag_message("n_projections: must be >= 1", parser) == "--n-projections: must be >= 1"
    assert (
        flag_message("with block_size=0 and top_k=3", parser) == "with --block-size 0 and --top-k 3"
    )
    assert flag_message("client: no scheduler", parser) == "--scheduler: no scheduler"
    # Words that are not arguments of the command, and arguments mid-sentence without '=',
    # are left alone; newlines become spaces.
    assert flag_message("the output seed\nof include_unfired=True", parser) == (
        "the output seed of include_unfired=True"
    )
    assert flag_message(FileNotFoundError(2, "No such file or directory", "x.json"), parser) == (
        "x.json: No such file or directory"
    )
    assert flag_message(KeyError("feature id 3 is not here"), parser) == "feature id 3 is not here"


def argparse_of(command: str) -> Any:
    import argparse

    from semot.cli import circuits, collect, distributed, match

    parser = argparse.ArgumentParser(prog="semot")
    sub = parser.add_subparsers(dest="command")
    for module in (collect, match, distributed):
        module.add_parsers(sub)
    circuits.add_parser(sub)
    return sub.choices[command]


def test_interrupt_and_warnings_are_one_line(
    monkeypatch: pytest.MonkeyPatch, paths: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    import semot.cli.match as cli_match

    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    def warns(args: Any) -> int:
        warnings.warn("three blocks\nwere recomputed", SemotWarning, stacklevel=1)
        warnings.warn("not ours", UserWarning, stacklevel=1)
        return 0

    argv = [*MATCH, "--out", "m.csv"]
    argv = [a.format(**paths) for a in argv]
    monkeypatch.setattr(cli_match, "run_match", interrupted)
    rc, _, err = run_cli(argv, capsys)
    assert rc == 130 and err == "semot match: interrupted\n"
    monkeypatch.setattr(cli_match, "run_match", warns)
    with pytest.warns(UserWarning, match="not ours"):  # others are shown as Python shows them
        rc, _, err = run_cli(argv, capsys)
    assert rc == 0
    assert err == "semot match: warning: three blocks were recomputed\n"


# ---------------------------------------------------------------- cdist: resume and scheduler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cdist_resume_of_a_damaged_output_and_messages_in_flags(
    paths: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("distributed")
    out = tmp_path / "D.npy"
    base = [a.format(**paths) for a in CDIST] + ["--n-projections", "8", "--block-size", "2"]
    base += ["--out", str(out)]
    rc, _, err = run_cli(base, capsys)
    assert rc == 0, err
    want = np.load(out)
    assert np.array_equal(
        want, semot.sliced_wasserstein_cdist(make_fd(0), make_fd(0), n_projections=8, seed=0)
    )
    os.truncate(out, out.stat().st_size - 100)  # killed, then the file lost its end
    rc, _, err = run_cli(base, capsys)
    assert rc == 0, err
    warned = [line for line in err.splitlines() if "warning" in line]
    assert warned and all(w.startswith("semot cdist: warning: out ") for w in warned), err
    assert "bytes instead of" in warned[0] and "Traceback" not in err
    assert np.array_equal(np.load(out), want)  # bit for bit
    rc, _, err = run_cli([*base, "--seed", "1"], capsys)
    line = assert_one_line_error(err, "semot cdist", r"different computation", r"--overwrite")
    assert rc == EXIT_ERROR and "overwrite=True" not in line
    record = out.with_name(out.name + ".semot.json")
    record.write_text("{")
    rc, _, err = run_cli(base, capsys)
    assert rc == EXIT_ERROR
    assert_one_line_error(err, "semot cdist", r"record .* is unreadable .*pass --overwrite")
    rc, _, err = run_cli([*base, "--overwrite"], capsys)
    assert rc == 0 and np.array_equal(np.load(out), want)


def test_unreachable_scheduler_is_one_line_and_no_client_traceback_later(
    paths: dict[str, str], tmp_path: Path
) -> None:
    pytest.importorskip("distributed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [a.format(**paths) for a in CDIST] + ["--out", str(tmp_path / "D.npy")]
    argv += ["--scheduler", f"tcp://127.0.0.1:{free_port()}", "--timeout", "1"]
    res = subprocess.run(
        [sys.executable, "-m", "semot", *argv], capture_output=True, text=True, env=env, timeout=60
    )
    assert res.returncode == EXIT_ERROR
    assert_one_line_error(res.stderr, "semot cdist", r"cannot reach the Dask scheduler")
    # A malformed address given to the library: a ValueError before any Client exists, so
    # nothing prints at exit.
    code = (
        "import numpy as np, semot, semot.distributed as sd\n"
        "c = semot.PointClouds.from_padded(np.ones((2, 3, 2)))\n"
        "for address in ('tcp://127.0.0.1', 'nohostport', 'bogus://x:1', 'tcp://h:99999'):\n"
        "    try:\n"
        "        sd.sliced_wasserstein_cdist(c, c, client=address, progress=False)\n"
        "    except ValueError as e:\n"
        "        assert str(e).startswith('client: '), e\n"
        "    else:\n"
        "        raise AssertionError(address)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert res.returncode == 0 and res.stderr == "", res.stderr
