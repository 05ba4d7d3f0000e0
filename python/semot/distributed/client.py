"""The client side of the Dask functions: connection, scattering, the run loop, progress.

:func:`connect` yields a client with at least one worker (or raises
:class:`~semot.errors.SchedulerUnavailableError` within ``timeout``); :func:`scatter` sends
the clouds to every worker once; :func:`run_blocks` submits the blocks, hands each result
over as it arrives, notices a scheduler that went away or a cluster left without workers,
and cancels what is left on any early exit (Ctrl-C included).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from contextlib import contextmanager
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

try:
    from distributed import Client, Future, as_completed
except ImportError as _e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "semot.distributed needs Dask distributed: pip install 'semot[distributed]'"
    ) from _e

from semot._utils.checks import FloatArray
from semot.clouds import PointClouds
from semot.distributed.blocks import Block
from semot.errors import SchedulerUnavailableError

__all__ = [
    "MAX_RESHIPS",
    "ClientLike",
    "Progress",
    "ProgressBar",
    "Shipment",
    "ShippedClouds",
    "aligned",
    "check_address",
    "connect",
    "run_blocks",
    "scatter",
]

ClientLike: TypeAlias = "Client | str | None"
Progress: TypeAlias = bool | Callable[[int, int], None]


def aligned(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``x``, copied only if it is not aligned and C-contiguous (what the Rust kernels read).

    Dask ships arrays inside pickled objects as raw frames that may start at any byte, and
    the kernels refuse misaligned data.
    """
    return np.require(x, requirements=["C", "A"])


def _rebuild_clouds(
    points: FloatArray, weights: FloatArray, offsets: npt.NDArray[np.int64]
) -> PointClouds:
    """Unpickle :class:`ShippedClouds`, aligning the arrays."""
    return ShippedClouds.from_csr_unchecked(aligned(points), aligned(weights), aligned(offsets))


class ShippedClouds(PointClouds):
    """Clouds that arrive aligned wherever Dask sends them.

    Dask ships arrays inside pickled objects as raw frames that may start at any byte; this
    class aligns its arrays once on arrival (from the client or from another worker), not in
    every task.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_clouds, (self.points, self.weights, self.offsets))


def check_address(address: str) -> None:
    """Raise ValueError unless ``address`` is a well-formed scheduler address with a port.

    Checked before a :class:`distributed.Client` is made: one made from a malformed address
    fails in its constructor and prints a traceback from its ``__del__`` seconds later.
    """
    from distributed.comm import get_address_host_port

    try:
        _, port = get_address_host_port(address)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"client: {address!r} is not a Dask scheduler address such as 'tcp://host:8786' ({e})"
        ) from None
    if not 0 < port < 65536:
        raise ValueError(f"client: {address!r}: port {port} is not in 1..65535")


@contextmanager
def connect(client: ClientLike, timeout: float) -> Iterator[Client]:
    """Yield a connected client with at least one worker; close it if we opened it."""
    own = None
    if client is None:
        try:
            from distributed import get_client

            c = get_client()
        except ValueError:
            raise ValueError(
                "client: no Dask client is active; pass client=Client(...) or a scheduler "
                "address such as 'tcp://host:8786'"
            ) from None
    elif isinstance(client, str):
        check_address(client)
        try:
            c = own = Client(client, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise SchedulerUnavailableError(
                f"cannot reach the Dask scheduler at {client} within {timeout:g} s ({e}); "
                "start one with `dask scheduler` and workers with `dask worker ADDRESS`"
            ) from None
    elif isinstance(client, Client):
        c = client
    else:
        raise TypeError(
            "client: expected a distributed.Client, an address or None, got "
            f"{type(client).__name__}"
        )
    try:
        if c.status != "running":
            raise SchedulerUnavailableError(f"the Dask client is {c.status}, not running")
        try:
            c.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, OSError) as e:
            raise SchedulerUnavailableError(
                f"no Dask worker joined the scheduler at {c.scheduler.address} within "
                f"{timeout:g} s ({type(e).__name__}); start workers with `dask worker "
                f"{c.scheduler.address}`"
            ) from None
        yield c
    finally:
        if own is not None:
            own.close(timeout=timeout)


class ProgressBar:
    """A progress line on stderr: blocks done, rate, time left."""

    def __init__(self, total: int, done: int, desc: str, progress: Progress) -> None:
        self.total, self.done, self.desc = total, done, desc
        self.callback = progress if callable(progress) else None
        self.enabled = progress is True
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.start_done = done
        self.last = 0.0
        self.show(force=True)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more blocks done; call the callback; redraw when due."""
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)
        self.show()

    def show(self, force: bool = False) -> None:
        """Redraw the line (at most twice a second on a terminal, every 30 s otherwise)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < (0.5 if self.tty else 30.0):
            return
        self.last = now
        dt = now - self.t0
        new = self.done - self.start_done
        eta = ""
        if new and self.done < self.total:
            eta = f", {_hms((self.total - self.done) * dt / new)} left"
        line = f"{self.desc}: {self.done}/{self.total} blocks, {_hms(dt)}{eta}"
        if self.tty:
            sys.stderr.write("\r" + line.ljust(70))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        """Draw the final line."""
        if self.enabled:
            self.show(force=True)
            if self.tty:
                sys.stderr.write("\n")
                sys.stderr.flush()


def _hms(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _ping(client: Client, timeout: float) -> int:
    """Ask the scheduler for its workers, within ``timeout``; return how many there are."""
    box: dict[str, Any] = {}

    def ask() -> None:
        try:
            # A real round trip: Client.scheduler_info() answers from a cache when the
            # scheduler is gone.
            info = client.sync(client.scheduler.identity, n_workers=-1)
            box["n"] = len(info["workers"])
        except Exception as e:  # reported to the caller below
            box["error"] = e

    t = threading.Thread(target=ask, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise SchedulerUnavailableError(
            f"the Dask scheduler at {client.scheduler.address} did not answer within {timeout:g} s"
        )
    if "error" in box:
        raise SchedulerUnavailableError(
            f"lost the Dask scheduler at {client.scheduler.address}: {box['error']}"
        )
    return int(box["n"])


class Shipment:
    """Inputs on the cluster, ``make()``'s futures, that can be sent again.

    Pass :meth:`reship` as :func:`run_blocks`' ``reship`` and read :attr:`futures` in its
    ``submit``; :meth:`release` when the blocks are done.
    """

    def __init__(self, make: Callable[[], list[Future[Any]]]) -> None:
        self._make = make
        self.futures = make()

    def reship(self) -> None:
        """Release the current inputs and send them again."""
        self.release()
        self.futures = self._make()

    def release(self) -> None:
        """Release the current inputs."""
        for f in self.futures:
            f.release()


#: How many times :func:`run_blocks` sends lost inputs again within one call.
MAX_RESHIPS = 3


def run_blocks(
    client: Client,
    blocks: Sequence[Block],
    submit: Callable[[Block], Future[Any]],
    on_result: Callable[[Block, Any], None],
    *,
    progress: Progress,
    desc: str,
    timeout: float,
    n_done: int = 0,
    on_stop: Callable[[], None] | None = None,
    reship: Callable[[], None] | None = None,
) -> None:
    """Submit ``blocks`` and hand each result to ``on_result`` as it arrives.

    Raises :class:`SchedulerUnavailableError` when the scheduler goes away or stops answering,
    or when no worker is left for ``timeout`` seconds. On any exit before the end (Ctrl-C,
    errors) the remaining blocks are cancelled and ``on_stop`` runs.

    A block the scheduler cancels while the client runs lost an input: Dask's active memory
    manager drops the extra replicas of scattered data, so a worker that dies can take the
    last copy with it. ``reship`` (which sends the inputs again, for the next ``submit``) then
    runs, once per loss, and the cancelled blocks are submitted again, at most
    :data:`MAX_RESHIPS` times per call; without ``reship`` the cancellation is an error.
    """
    bar = ProgressBar(n_done + len(blocks), n_done, desc, progress)
    futures: dict[Future[Any], Block] = {}
    # Which shipment of the inputs each block's future uses: a cancelled block from an older
    # shipment than the current one is resubmitted without shipping again.
    shipment: dict[Future[Any], int] = {}
    current = 0
    address = client.scheduler.address

    def send(blk: Block) -> Future[Any]:
        fut = submit(blk)
        futures[fut] = blk
        shipment[fut] = current
        return fut

    try:
        for blk in blocks:
            send(blk)
        ac = as_completed(list(futures), loop=client.loop)
        last_seen = time.monotonic()
        no_workers_since: float | None = None
        while futures:
            batch = ac.next_batch(block=False)
            if not batch:
                with ac.thread_condition:
                    ac.thread_condition.wait(timeout=0.5)
                now = time.monotonic()
                bar.show()
                if client.status in ("closing", "closed"):
                    raise SchedulerUnavailableError(
                        f"lost the Dask scheduler at {address} (client {client.status})"
                    )
                if now - last_seen > min(5.0, timeout):
                    workers = _ping(client, timeout)
                    last_seen = now
                    if workers == 0:
                        no_workers_since = no_workers_since or now
                        if now - no_workers_since > timeout:
                            raise SchedulerUnavailableError(
                                f"the Dask scheduler at {address} has had no workers for "
                                f"{timeout:g} s"
                            )
                    else:
                        no_workers_since = None
                continue
            last_seen = time.monotonic()
            for fut in batch:
                blk = futures.pop(fut)
                shipped = shipment.pop(fut)
                result: Any = None
                # A block may be cancelled between its status and its result.
                cancelled = fut.status == "cancelled"
                if not cancelled:
                    try:
                        result = fut.result()
                    except Exception as e:
                        if fut.status == "error":
                            raise  # the block itself failed
                        cancelled = isinstance(e, CancelledError) or fut.status == "cancelled"
                        if not cancelled:
                            # Fetching a finished result failed: a connection problem,
                            # unless the scheduler still answers.
                            if client.status != "running":
                                raise SchedulerUnavailableError(
                                    f"lost the Dask scheduler at {address}: {e}"
                                ) from None
                            _ping(client, timeout)
                            raise
                if cancelled:
                    if client.status != "running":
                        raise SchedulerUnavailableError(
                            f"lost the Dask scheduler at {address}: the blocks were cancelled "
                            f"(client {client.status})"
                        )
                    if reship is None or (shipped == current and current >= MAX_RESHIPS):
                        raise RuntimeError(f"{desc}: block {blk.index} was cancelled")
                    if shipped == current:
                        reship()
                        current += 1
                    ac.add(send(blk))
                    continue
                fut.release()
                on_result(blk, result)
                bar.update()
    except BaseException:
        if futures:
            try:
                client.cancel(list(futures))
            except Exception:  # the scheduler may be gone already
                pass
        if on_stop is not None:
            on_stop()
        raise
    finally:
        bar.close()


def scatter(client: Client, *objs: Any) -> list[Future[Any]]:
    """Send each object to every worker once; the same object is sent once."""
    out: list[Future[Any]] = []
    seen: dict[int, Future[Any]] = {}
    for obj in objs:
        if id(obj) not in seen:
            ship = obj
            if isinstance(obj, PointClouds):
                ship = ShippedClouds.from_csr_unchecked(obj.points, obj.weights, obj.offsets)
            seen[id(obj)] = client.scatter(ship, broadcast=True, hash=False)
        out.append(seen[id(obj)])
    return out
