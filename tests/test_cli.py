from __future__ import annotations

import subprocess
import sys

import pytest

from semot import __version__
from semot.cli.app import main


def test_cli_demo_and_version(capsys, tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--n-tokens", "8000", "--samples-per-feature", "16", "--no-plots"]
    assert main([*args, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "top-1 accuracy" in text and "semot sliced" in text
    assert (out / "results.json").is_file() and (out / "results.csv").is_file()
    assert main(["version"]) == 0
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo", "--n-tokens", "0"])


def test_bench_match_quick(capsys, tmp_path):
    out = tmp_path / "bench"
    assert main(["bench-match", "--quick", "--n-tokens", "6000", "--samples-per-feature", "16",
                 "--out", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "rescaling" in text and "samples per feature" in text
    for name in ("results.csv", "sample_size.csv", "table.md", "accuracy.png", "results.json"):
        assert (out / name).is_file(), name


def test_import_semot_does_not_import_torch():
    code = (
        "import sys, semot, semot.bench.demo, semot.matching.matcher, semot.synthetic.planted\n"
        "assert 'torch' not in sys.modules and 'transformer_lens' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
