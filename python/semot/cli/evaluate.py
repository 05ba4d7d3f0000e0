"""``semot evaluate``: score every matching method against a silver standard on held-out tokens."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from semot.cli.model_options import (
    add_model_options,
    add_site_options,
    add_token_options,
    load_cli_model,
    site_hooks,
    token_source,
)
from semot.cli.options import non_negative_int, positive_int


def threshold_list(text: str) -> list[float]:
    """Parse ``--thresholds 0.3,0.5,0.7`` (argparse type)."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated correlations such as 0.3,0.5,0.7, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one threshold")
    bad = [v for v in values if not 0.0 < v <= 1.0]
    if bad:
        raise argparse.ArgumentTypeError(f"thresholds are correlations in (0, 1], got {bad[0]}")
    return values


def add_parser(sub: Any) -> None:
    """Register the ``evaluate`` sub-command."""
    e = sub.add_parser(
        "evaluate",
        help="is a match right? every method against a silver standard (needs semot[collect])",
        description=(
            "Run the model over held-out tokens that the collection never saw; take as silver "
            "standard each source feature's best-correlated target (Pearson, split A of the "
            "held-out sequences) and score semot's matches and the baselines against it: "
            "top-1 / top-5 agreement, mean correlation of the chosen target, overlap of "
            "top-activating contexts. Prints the table; --out gets report.json and a plot."
        ),
    )
    e.add_argument("run", metavar="RUN_DIR", help="a finished `semot collect` run")
    e.add_argument("--from", dest="source", required=True, metavar="SITE", help="source site")
    e.add_argument("--to", dest="target", required=True, metavar="SITE", help="target site")
    add_model_options(e)
    e.add_argument(
        "--sae-path",
        action="append",
        default=[],
        help=(
            "sae-lens SAE dir of --from, then of --to (give both; default: the SAEs the run's "
            "record names)"
        ),
    )
    add_site_options(e)
    add_token_options(e)
    e.add_argument("--n-tokens", type=positive_int, help="held-out tokens to read (default: all)")
    e.add_argument("--n-sources", type=positive_int, default=1024, help="source features evaluated")
    e.add_argument(
        "--thresholds",
        type=threshold_list,
        default=[0.3, 0.5, 0.7],
        help="silver-standard correlation thresholds (default 0.3,0.5,0.7)",
    )
    e.add_argument(
        "--top-contexts", type=positive_int, default=20, help="contexts kept per feature"
    )
    e.add_argument(
        "--sinkhorn-sources", type=positive_int, default=128, help="sources Sinkhorn covers"
    )
    e.add_argument("--batch-size", type=positive_int, default=16, help="sequences per forward pass")
    e.add_argument("--seed", type=non_negative_int, default=0)
    e.add_argument("--out", help="directory for report.json and top1_agreement.png")
    e.add_argument("--no-progress", action="store_true")


def _record(root: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    from semot.features.runs import RUN_FILE

    path = root / RUN_FILE
    if not path.is_file():
        parser.error(f"RUN_DIR: {root} has no {RUN_FILE} (not a finished `semot collect` run)")
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return record


def _sae_source(
    record: dict[str, Any], site: str, flag: str, parser: argparse.ArgumentParser
) -> dict[str, str]:
    identity = (record.get("config", {}).get("sites", {}).get(site) or {}).get("identity") or {}
    if identity.get("path"):
        return {"path": str(identity["path"])}
    if identity.get("release") and identity.get("sae_id"):
        return {"release": str(identity["release"]), "sae_id": str(identity["sae_id"])}
    parser.error(f"{flag}: the run's record names no SAE for site {site!r}; give --sae-path twice")
    raise AssertionError  # pragma: no cover - parser.error exits


def run_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Carry out ``semot evaluate``."""
    root = Path(args.run)
    record = _record(root, parser)
    sites = list(record.get("sites", {}))
    for flag, name in (("--from", args.source), ("--to", args.target)):
        if name not in sites:
            parser.error(f"{flag}: no site {name!r} in the run {root}; its sites are {sites}")
    if args.sae_path and len(args.sae_path) != 2:
        parser.error(
            f"--sae-path: give it twice (the SAE of --from, then of --to), got {len(args.sae_path)}"
        )
    if args.sae_path:
        where = [{"path": p} for p in args.sae_path]
    else:
        where = [
            _sae_source(record, args.source, "--from", parser),
            _sae_source(record, args.target, "--to", parser),
        ]

    from semot.collection.models import Site, load_sae, runner_for
    from semot.collection.run import load_run
    from semot.evaluation import evaluate

    model = load_cli_model(args)
    runner = runner_for(model)
    dev = str(runner.device)
    hooks = site_hooks(runner, args, 2, parser)
    config_sites = record.get("config", {}).get("sites", {})
    built = []
    saes = []
    for i, (name, src) in enumerate(zip((args.source, args.target), where, strict=True)):
        sae, ident = load_sae(**src, device=dev)
        hook = hooks[i] if hooks else (config_sites.get(name) or {}).get("hook")
        built.append(Site.from_sae(sae, name=name, hook=hook, identity=ident))
        saes.append(sae)
    fds = load_run(root)
    tokens = token_source(args, runner.tokenizer, parser)
    if tokens is not None and tokens.describe() == record.get("config", {}).get("tokens"):
        print(
            "semot evaluate: warning: these are the tokens the run was collected on; the "
            "silver standard should come from held-out tokens",
            file=sys.stderr,
        )
    result = evaluate(
        model,
        built[0],
        built[1],
        fds[args.source],
        fds[args.target],
        tokens,
        source_sae=saes[0],
        target_sae=saes[1],
        n_tokens=args.n_tokens,
        n_sources=args.n_sources,
        thresholds=args.thresholds,
        top_contexts=args.top_contexts,
        sinkhorn_sources=args.sinkhorn_sources,
        batch_size=args.batch_size,
        seed=args.seed,
        ignore_token_ids=args.ignore_token_ids,
        progress=not args.no_progress,
    )
    print(result.format())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report = result.to_json(out / "report.json")
        plot = result.plot(out / "top1_agreement.png")
        print(f"wrote {report} and {plot}")
    return 0
