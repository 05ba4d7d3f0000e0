"""``semot cdist``: all-pairs distances between two collected sites, on a Dask cluster."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def add_parsers(sub: Any) -> None:
    """Register the ``cdist`` sub-command."""
    from semot.cli.options import (
        add_distance_option,
        non_negative_int,
        positive_float,
        positive_int,
        scheduler_address,
        seconds,
    )

    c = sub.add_parser(
        "cdist",
        help="all-pairs distances between two sites, block by block on a Dask cluster",
        description=(
            "Compute the distance between every feature of one collected site (--from) and "
            "every feature of another (--to), block by block on a Dask cluster, and write the "
            "matrix to a .npy or .zarr file (resumable: rerun the same command after an "
            "interruption) or the --top-k nearest targets of every source to a .npz file. "
            "Rows and columns are the features that fired; their ids go to OUT.ids.npz."
        ),
    )
    c.add_argument("run", help="a `semot collect` output dir (or a FeatureDistributions dir)")
    c.add_argument("--from", dest="source", required=True, help="site name, hook name or layer")
    c.add_argument("--to", dest="target", required=True, help="site name, hook name or layer")
    add_distance_option(c, default="sliced", choices=("sliced", "sinkhorn"))
    c.add_argument("--method", choices=["exact", "quantile"], default="exact", help="sliced only")
    c.add_argument("--n-projections", type=positive_int, default=128)
    c.add_argument("--n-quantiles", type=positive_int, help="quantile levels (method quantile)")
    c.add_argument("--p", type=float, default=2.0, help="order of the distance")
    c.add_argument(
        "--reg", type=positive_float, help="Sinkhorn regularisation (required for sinkhorn)"
    )
    c.add_argument("--debiased", action="store_true", help="Sinkhorn divergence")
    c.add_argument("--seed", type=non_negative_int, default=0)
    c.add_argument(
        "--top-k", type=positive_int, help="keep the k nearest targets per source (.npz out)"
    )
    c.add_argument("--block-size", type=positive_int, help="rows/columns per block (default 512)")
    c.add_argument(
        "--scheduler", default="local", type=scheduler_address,
        help="Dask scheduler address (tcp://host:8786), or 'local' for a cluster in this "
        "process (default)",
    )  # fmt: skip
    c.add_argument("--threads", type=positive_int, help="Rust threads per block (default 1)")
    c.add_argument("--overwrite", action="store_true", help="replace OUT instead of resuming")
    c.add_argument("--no-progress", action="store_true")
    c.add_argument(
        "--timeout", type=seconds, default=60.0, help="seconds to wait for the cluster (> 0)"
    )
    c.add_argument("--out", required=True, help=".npy or .zarr (matrix), .npz (with --top-k)")


def run_cdist(args: argparse.Namespace) -> int:
    """Carry out ``semot cdist``."""
    import numpy as np

    from semot import distributed
    from semot.cli.match import find_site, load_sites
    from semot.cli.options import check_output_dir, check_output_file, chosen_distance
    from semot.matching.sets import feature_set

    out = Path(args.out)
    if args.top_k is None and out.suffix not in (".npy", ".zarr"):
        raise ValueError(f"--out {args.out}: expected a .npy or .zarr file name")
    if args.top_k is not None and out.suffix != ".npz":
        raise ValueError(f"--out {args.out}: with --top-k, expected a .npz file name")
    distance = chosen_distance(args)
    if distance == "sinkhorn" and args.reg is None:
        raise ValueError("--reg is required with --distance sinkhorn")
    # Before any work: the output, the ids file beside it and the top-k checkpoint.
    if out.suffix == ".zarr":
        check_output_dir("--out", out)
    else:
        check_output_file("--out", out)
    check_output_file("--out", out.with_name(out.name + ".ids.npz"))
    if args.top_k is not None:
        check_output_dir("--out", out.with_name(out.name + ".blocks"))
    runs = load_sites(args.run)
    src = feature_set(find_site(runs, args.source, "--from"), "--from")
    tgt = feature_set(find_site(runs, args.target, "--to"), "--to")
    for flag, fs in (("--from", src), ("--to", tgt)):
        if fs.n_excluded:
            print(f"{flag}: {fs.n_excluded} features never fired and are left out", file=sys.stderr)
    common: dict[str, Any] = {
        "n_threads": args.threads,
        "top_k": args.top_k,
        "block_size": args.block_size,
        "progress": not args.no_progress,
        "timeout": args.timeout,
    }
    if args.top_k is None:
        common |= {"out": out, "overwrite": args.overwrite}
    else:
        # The blocks' top-k are kept next to the output until it is written, so an
        # interrupted run resumes.
        common["checkpoint"] = out.with_name(out.name + ".blocks")
    with _cluster(args.scheduler, args.threads) as client:
        if distance == "sliced":
            res = distributed.sliced_wasserstein_cdist(
                src.clouds, tgt.clouds, client=client, n_projections=args.n_projections,
                p=args.p, seed=args.seed, method=args.method, n_quantiles=args.n_quantiles,
                **common,
            )  # fmt: skip
        else:
            res = distributed.sinkhorn_cdist(
                src.clouds, tgt.clouds, reg=args.reg, p=args.p, debiased=args.debiased,
                client=client, **common,
            )  # fmt: skip
    ids = out.with_name(out.name + ".ids.npz")
    if args.top_k is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            out, source=src.ids, target=tgt.ids[res.indices], indices=res.indices,
            distances=res.distances,
        )  # fmt: skip
        shutil.rmtree(common["checkpoint"], ignore_errors=True)
        print(f"top-{res.indices.shape[1]} targets of {len(src.ids)} sources written to {out}")
    else:
        np.savez(ids, source=src.ids, target=tgt.ids)
        print(f"{res.shape[0]} x {res.shape[1]} distances in {out} (feature ids: {ids.name})")
    return 0


@contextmanager
def _cluster(scheduler: str, threads: int | None) -> Iterator[Any]:
    """Yield what ``client=`` takes for ``--scheduler``: an address, or an in-process cluster."""
    if scheduler != "local":
        yield scheduler
        return
    from distributed import Client, LocalCluster

    # One worker with a Dask thread per core (the kernels release the GIL), in this process
    # so that the clouds are not copied.
    cores = os.cpu_count() or 1
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=max(1, cores // (threads or 1)), processes=False,
            dashboard_address=None,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):  # fmt: skip
        yield client
