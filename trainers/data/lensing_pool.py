"""Run independent tasks on all cores with a progress bar (rich), results in task order."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")
R = TypeVar("R")


def run_tasks(fn: Callable[[T], R], tasks: Sequence[T], workers: int, progress: bool, label: str) -> list[R]:
    """``[fn(t) for t in tasks]`` on ``workers`` processes (1: in this process), showing progress.

    Args:
        fn: A module-level function (it is pickled by name to the workers).
        tasks: Its arguments, one task each.
        workers: Number of processes.
        progress: Show a progress bar on the terminal.
        label: The bar's description.

    Returns:
        The results, in the order of ``tasks``.
    """
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        tracker = bar.add_task(label, total=len(tasks))
        if workers <= 1 or len(tasks) <= 1:
            results = []
            for task in tasks:
                results.append(fn(task))
                bar.advance(tracker)
            return results
        chunk = max(1, min(32, len(tasks) // (8 * workers)))  # small chunks: a smooth bar, little overhead
        # forkserver, not fork: the caller may be a torch or Ray process with threads running.
        context = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
            results = []
            for result in pool.map(fn, tasks, chunksize=chunk):
                results.append(result)
                bar.advance(tracker)
            return results
