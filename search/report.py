"""The study's answer: accuracy against parameters, split into encoder and head.

Trial records (flat dicts: dotted config keys plus metrics) give the Pareto front and the encoder-size x
head-depth trade-off, where the seed's finding shows (shallow encoders want deep heads, deep encoders do
well with shallow ones). Pure pandas / numpy / matplotlib (Agg) / rich; no Ray, no MLflow.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, PercentFormatter
from rich.console import Console
from rich.table import Column, Table

ENCODER_KEYS = ("model.embed_dim", "model.depth", "model.patch_size")  # what sets the encoder's size
CONFIG_KEYS = (*ENCODER_KEYS, "model.mask_ratio", "head.depth", "head.width")
SCORE_KEYS = ("finetune_val_acc", "finetune_val_auc_micro", "test_acc", "test_auc_micro")
METRIC_KEYS = (*SCORE_KEYS, "encoder_params", "head_params", "total_params")
EXCLUDED_STATES = ("failed", "running")  # stopped trials were measured; these may hold partial metrics
_LABEL_STYLE = dict(textcoords="offset points", ha="right", va="bottom", fontsize=7.5, annotation_clip=False)
_LABEL_BOX = {"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.75", "alpha": 0.92}
_LABEL_LINE = {"arrowstyle": "-", "color": "0.6", "lw": 0.7, "shrinkB": 6}
_WORDS = {"finetune": "fine-tune", "acc": "accuracy", "auc": "ROC-AUC", "micro": "(micro)"}


def human_count(n: float | None) -> str:
    """A parameter count for people: ``950``, ``210K``, ``1.6M`` (three significant digits at most)."""
    if n is None or not np.isfinite(n):
        return "n/a"
    sign, value = ("-" if n < 0 else ""), abs(float(n))
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        text = f"{value / scale:.3g}"
        if float(text) >= 1:
            return f"{sign}{text}{suffix}"
    return f"{sign}{value:.0f}"


def _name(key: str) -> str:
    """``finetune_val_auc_micro`` -> ``fine-tune val ROC-AUC (micro)``."""
    return " ".join(_WORDS.get(word, word) for word in key.split("_"))


def trials_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per trial with numeric columns as float and missing values as NaN.

    Args:
        records: Flat dicts with ``trial``, ``state``, the config keys in `CONFIG_KEYS` and the metrics in
            `METRIC_KEYS`; absent keys, None and unparsable values become NaN, extra keys are kept.

    Returns:
        The frame; ``state`` is lower-case and ``total_params`` is filled from encoder + head where absent.
    """
    df = pd.DataFrame([dict(r) for r in records])
    df = df.reindex(columns=list(dict.fromkeys([*df.columns, "trial", "state", *CONFIG_KEYS, *METRIC_KEYS])))
    df["trial"] = df["trial"].where(df["trial"].notna(), [f"trial_{i}" for i in range(len(df))]).astype(str)
    state = df["state"].fillna("").astype(str).str.strip().str.lower()
    df["state"] = state.replace({"": "unknown", "stopped early": "stopped"})
    numeric = [*CONFIG_KEYS, *METRIC_KEYS]
    df[numeric] = df[numeric].apply(pd.to_numeric, errors="coerce").astype(float)
    df["total_params"] = df["total_params"].fillna(df["encoder_params"] + df["head_params"])
    return df


def _eligible(df: pd.DataFrame, *cols: str) -> pd.Series:
    """Rows not in an excluded state whose ``cols`` are all finite."""
    return ~df["state"].isin(EXCLUDED_STATES) & np.isfinite(df[list(cols)].to_numpy(dtype=float)).all(axis=1)


def pareto_front(df: pd.DataFrame, objective: str = "test_acc", cost: str = "total_params") -> pd.Series:
    """Which trials are non-dominated when maximizing ``objective`` and minimizing ``cost``.

    A trial is dominated if another is at least as good on both and strictly better on one, so exact
    duplicates are both on the front. Failed trials and rows without a finite objective and cost are never
    on it.

    Returns:
        A boolean Series aligned with ``df.index``.
    """
    ok = _eligible(df, objective, cost).to_numpy()
    y, x = df[objective].to_numpy(dtype=float)[ok], df[cost].to_numpy(dtype=float)[ok]
    no_worse = (y[None, :] >= y[:, None]) & (x[None, :] <= x[:, None])  # [i, j]: j at least as good as i
    better = (y[None, :] > y[:, None]) | (x[None, :] < x[:, None])
    front = np.zeros(len(df), dtype=bool)
    front[ok] = ~(no_worse & better).any(axis=1)
    return pd.Series(front, index=df.index, name="pareto")


def encoder_label(row: Mapping[str, Any]) -> str:
    """The encoder-size bucket of a trial, e.g. ``e128·d8·p8`` (embed_dim, depth, patch_size)."""
    values = [pd.to_numeric(row.get(key), errors="coerce") for key in ENCODER_KEYS]
    return "·".join(f"{t}{int(v)}" if pd.notna(v) else f"{t}?" for t, v in zip("edp", values, strict=True))


def tradeoff_table(df: pd.DataFrame, objective: str = "test_acc") -> pd.DataFrame:
    """The best trial in each (encoder size, head depth) cell.

    Ties on the objective go to the trial with fewer total parameters.

    Returns:
        Tidy frame, one row per non-empty cell, ordered by encoder params then head depth, with columns
        ``encoder``, ``encoder_params``, ``head_depth``, ``head_params``, ``best_<objective>``, ``trial``.
    """
    cols = ["encoder", "encoder_params", "head_depth", "head_params", f"best_{objective}", "trial"]
    sub = df[_eligible(df, objective, "head.depth")].copy()
    if sub.empty:
        return pd.DataFrame(columns=cols)
    sub["encoder"] = sub.apply(encoder_label, axis=1)
    sub["head_depth"] = sub["head.depth"].astype(int)
    sub = sub.sort_values([objective, "total_params"], ascending=[False, True], na_position="last")
    best = sub.groupby(["encoder", "head_depth"], sort=False).head(1)
    best = best.rename(columns={objective: f"best_{objective}"})
    order = best.groupby("encoder")["encoder_params"].transform("min")
    best = best.assign(_order=order).sort_values(["_order", "encoder", "head_depth"], na_position="last")
    return best[cols].reset_index(drop=True).astype({"encoder_params": "Int64", "head_params": "Int64"})


def _objective_of(table: pd.DataFrame) -> str:
    return next(c for c in table.columns if c.startswith("best_")).removeprefix("best_")


def tradeoff_pivot(table: pd.DataFrame) -> pd.DataFrame:
    """Encoder sizes (rows, table order) against head depths (columns, ascending) of the best objective."""
    value = f"best_{_objective_of(table)}"
    pivot = table.pivot(index="encoder", columns="head_depth", values=value).astype(float)
    return pivot.reindex(index=table["encoder"].unique(), columns=sorted(table["head_depth"].unique()))


def write_tradeoff_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the tidy trade-off table as CSV (no index) and return the path."""
    table.to_csv(path, index=False)
    return Path(path)


def _render(table: Table) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(table)
    return console.export_text()


def format_table(table: pd.DataFrame) -> str:
    """The trade-off as terminal text: encoders down, head depths across, best value and head per cell."""
    objective = _objective_of(table)
    depths = sorted(table["head_depth"].unique())
    columns = [Column("enc params", justify="right"), *(Column(f"head depth {d}") for d in depths)]
    out = Table("encoder", *columns, title=f"best {_name(objective)}: encoder size x head depth")
    for encoder, rows in table.groupby("encoder", sort=False):
        cells = rows.set_index("head_depth")
        score = f"best_{objective}"
        winner = cells[score].idxmax()
        texts = {d: f"{r[score]:.4f} (head {human_count(r['head_params'])})" for d, r in cells.iterrows()}
        texts[winner] += " *"
        out.add_row(encoder, human_count(rows["encoder_params"].min()), *(texts.get(d, "") for d in depths))
    out.caption = "* best head depth for that encoder"
    return _render(out)


def format_front(df: pd.DataFrame, objective: str = "test_acc", cost: str = "total_params") -> str:
    """The Pareto-front trials as terminal text, cheapest first, with their parameter split and recipe."""
    front = df[pareto_front(df, objective, cost)].sort_values(cost)
    out = Table(title=f"Pareto front: {_name(objective)} vs {_name(cost)}")
    for name in ("trial", objective, "total", "encoder", "head", "embed", "depth", "patch", "mask", "head d"):
        out.add_column(name, justify="left" if name == "trial" else "right")
    for _, r in front.iterrows():
        counts = [human_count(r[k]) for k in ("total_params", "encoder_params", "head_params")]
        shape = [f"{r[k]:.0f}" for k in ENCODER_KEYS]
        mask, depth = f"{r['model.mask_ratio']:.2f}", f"{r['head.depth']:.0f}"
        out.add_row(r["trial"], f"{r[objective]:.4f}", *counts, *shape, mask, depth)
    return _render(out)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def _log_limits(x: np.ndarray, left: float = 0.24, right: float = 0.05) -> tuple[float, float]:
    """Log-axis limits leaving ``left`` / ``right`` fractions of the width free (room for front labels)."""
    lo, hi = np.log10(x.min()), np.log10(x.max())
    total = max(hi - lo, 0.5) / (1 - left - right)
    return 10 ** (lo - left * total), 10 ** (hi + right * total)


def _label_front(ax: plt.Axes, best: pd.DataFrame, objective: str, cost: str) -> None:
    """Label front points up and to the left (never a dominated, so empty, region), pushed apart in y."""
    fig, floor = ax.figure, -np.inf
    for _, r in best.sort_values(objective).iterrows():
        y_px = ax.transData.transform((r[cost], r[objective]))[1] * 72 / fig.dpi  # in points
        floor = max(y_px + 4, floor)
        text = (
            f"{encoder_label(r)} + head d{r['head.depth']:.0f}\n"
            f"enc {human_count(r['encoder_params'])} + head {human_count(r['head_params'])}"
        )
        xy, shift = (r[cost], r[objective]), (-9, floor - y_px)
        ax.annotate(text, xy, shift, bbox=_LABEL_BOX, arrowprops=_LABEL_LINE, zorder=6, **_LABEL_STYLE)
        floor += 26  # two 7.5-point lines plus padding


def pareto_plot(
    df: pd.DataFrame, path: str | Path, objective: str = "test_acc", cost: str = "total_params"
) -> Path:
    """Scatter of ``objective`` against parameters (log x) coloured by head depth, with the front drawn.

    Finished trials are filled and coloured by head depth; stopped and failed ones are hollow grey. The
    front is a step line through larger edged markers, each labelled with its encoder / head split.
    """
    shown = df[np.isfinite(df[objective]) & np.isfinite(df[cost]) & (df[cost] > 0)]
    best = shown[pareto_front(df, objective, cost).reindex(shown.index)].sort_values(cost)
    depths = sorted(shown["head.depth"].dropna().unique().astype(int))
    colour = {d: plt.get_cmap("Dark2")(i % 8) for i, d in enumerate(depths)}
    fig, ax = plt.subplots(figsize=(8.6, 5.6))
    done = shown["state"].eq("finished") & shown["head.depth"].notna()
    dots = {"s": 46, "zorder": 3}
    for depth in depths:
        pts = shown[done & shown["head.depth"].eq(depth)]
        ax.scatter(pts[cost], pts[objective], color=colour[depth], label=f"head depth {depth}", **dots)
    other = shown[~done]
    if len(other):
        ax.scatter(other[cost], other[objective], fc="none", ec="0.55", label="stopped / failed", **dots)
    ax.set_xscale("log")
    if len(shown):
        ax.set_xlim(*_log_limits(shown[cost].to_numpy(dtype=float)))
        span = max(np.ptp(shown[objective]), 0.02)
        ax.set_ylim(shown[objective].min() - 0.08 * span, shown[objective].max() + 0.3 * span)
    if len(best):
        line = {"where": "post", "color": "crimson", "lw": 1.6, "alpha": 0.8, "zorder": 4}
        ax.step(best[cost], best[objective], label="Pareto front", **line)
        fc = [colour[d] if ok else "w" for d, ok in zip(best["head.depth"], done[best.index], strict=True)]
        ax.scatter(best[cost], best[objective], s=140, c=fc, ec="crimson", linewidths=1.8, zorder=5)
        _label_front(ax, best, objective, cost)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: human_count(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    if objective.endswith("acc"):
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(True, which="major", color="0.92")
    ax.set_xlabel(f"{_name(cost)} (log scale; encoder + head, decoder excluded)")
    ax.set_ylabel(f"{_name(objective)} ({'%' if objective.endswith('acc') else 'fraction'})")
    note = f"; {len(df) - len(shown)} without metrics not shown" if len(df) > len(shown) else ""
    ax.set_title(f"{_name(objective)} vs parameters: {len(shown)} trials{note}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    return _save(fig, path)


def tradeoff_plot(table: pd.DataFrame, path: str | Path, objective: str = "test_acc") -> Path:
    """Heatmap of the best ``objective`` per encoder size (rows) and head depth (columns).

    Each cell shows the value and its trial's "enc X / head Y" parameters; empty cells stay blank, and the
    best head depth of each encoder (tried with two or more) is outlined.
    """
    pivot, pct = tradeoff_pivot(table), objective.endswith("acc")
    values = np.ma.masked_invalid(pivot.to_numpy(dtype=float))
    empty = np.ma.getmaskarray(values)
    cells = table.set_index(["encoder", "head_depth"])
    n_rows, n_cols = pivot.shape
    fig, ax = plt.subplots(figsize=(2.3 * n_cols + 3.2, 0.95 * n_rows + 1.9))
    image = ax.imshow(values, cmap=plt.get_cmap("YlGnBu").with_extremes(bad="white"), aspect="auto")
    for i, j in zip(*np.nonzero(~empty), strict=True):
        cell = cells.loc[(pivot.index[i], pivot.columns[j])]
        r, g, b, _ = image.cmap(image.norm(values[i, j]))
        params = f"enc {human_count(cell['encoder_params'])} / head {human_count(cell['head_params'])}"
        ink = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.55 else "black"
        text = f"{100 * values[i, j]:.1f}%" if pct else f"{values[i, j]:.3f}"
        text += f"\n{params}"
        ax.text(j, i, text, ha="center", va="center", fontsize=8.5, color=ink)
    for i in np.nonzero((~empty).sum(axis=1) > 1)[0]:  # a best head needs two to compare
        j = int(np.ma.argmax(values[i]))
        ax.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False, ec="crimson", lw=2.4, zorder=3))
    enc_params = table.groupby("encoder", sort=False)["encoder_params"].min()
    ax.set_yticks(range(n_rows), [f"{e} ({human_count(enc_params[e])})" for e in pivot.index], fontsize=9)
    head_params = table.groupby("head_depth")["head_params"].median()
    labels = [f"depth {d}\n(head ~{human_count(head_params[d])})" for d in pivot.columns]
    ax.set_xticks(range(n_cols), labels, fontsize=9)
    ax.set_xticks(np.arange(n_cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", lw=2)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("MLP head depth (typical head params)")
    ax.set_ylabel("encoder: embed·depth·patch (encoder params)")
    title = f"best {_name(objective)} per encoder size and head depth (outlined: best head per encoder)"
    ax.set_title(title, fontsize=10)
    fmt = PercentFormatter(1.0) if pct else None
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label=_name(objective), format=fmt)
    return _save(fig, path)
