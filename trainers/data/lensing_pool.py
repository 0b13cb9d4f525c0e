"""Run independent tasks on all cores with a progress bar (rich), results in task order."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")
R = TypeVar("R")


def _collect(results: Iterable[R], total: int, progress: bool, label: str) -> list[R]:
    """Drain ``results`` into a list while a rich progress bar counts them."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    out: list[R] = []
    with Progress(*columns, disable=not progress) as bar:
        tracker = bar.add_task(label, total=total)
        for result in results:
            out.append(result)
            bar.advance(tracker)
    return out


def run_tasks(fn: Callable[[T], R], tasks: Sequence[T], workers: int, progress: bool, label: str) -> list[R]:
    """``[fn(t) for t in tasks]`` on ``workers`` processes (1: in this process), showing progress.

    Workers are forked (where the platform can) before the progress bar starts its refresh thread. Fork,
    not spawn or forkserver: those re-import the caller's ``__main__`` (which breaks for ``python -``,
    notebooks and unguarded scripts) and re-import lenstronomy and astropy (~4 s) in every worker.

    Args:
        fn: A module-level function (pickled by name where the workers are not forked).
        tasks: Its arguments, one task each.
        workers: Number of processes.
        progress: Show a progress bar on the terminal.
        label: The bar's description.

    Returns:
        The results, in the order of ``tasks``.
    """
    if workers <= 1 or len(tasks) <= 1:
        return _collect(map(fn, tasks), len(tasks), progress, label)
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    chunk = max(1, min(32, len(tasks) // (8 * workers)))  # small chunks: a smooth bar, little overhead
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
        results = pool.map(fn, tasks, chunksize=chunk)  # submits everything, so the workers exist now
        return _collect(results, len(tasks), progress, label)
