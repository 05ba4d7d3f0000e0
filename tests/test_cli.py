from __future__ import annotations

import subprocess
import sys

import pytest

from semot import __version__
from semot.cli import main
from semot.demo import run


def test_demo_recovers_planted_groups():
    res = run(n_groups=4, per_group=5, n_samples=48, dim=8, seed=1, verbose=False)
    assert res.n_features == 20
    assert res.pair_precision > 0.9 and res.pair_recall > 0.9
    assert res.quantile_median_rel_error < 0.01


def test_cli_demo_and_version(capsys):
    assert main(["demo", "--groups", "3", "--per-group", "3", "--samples", "16", "--dim", "4"]) == 0
    assert "planted features" in capsys.readouterr().out
    assert main(["version"]) == 0
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["demo", "--groups", "0"])


def test_import_semot_does_not_import_torch():
    code = (
        "import sys, semot\n"
        "assert 'torch' not in sys.modules and 'transformer_lens' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
