"""The study's answer: accuracy against parameters, split into encoder and head.

Trial records (one flat dict per trial, dotted config keys plus metrics) become a frame; from it come the
Pareto front (maximize an objective, minimize a parameter count) and the trade-off table of encoder size
against head depth, which is where the seed's finding shows: shallow encoders want deep heads, deep
encoders do well with shallow ones. Pure pandas / numpy / matplotlib (Agg) / rich; no Ray, no MLflow.
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
from rich.table import Table

CONFIG_KEYS = (
    "model.embed_dim",
    "model.depth",
    "model.patch_size",
    "model.mask_ratio",
    "head.depth",
    "head.width",
)
METRIC_KEYS = (
    "finetune_val_acc",
    "finetune_val_auc_micro",
    "test_acc",
    "test_auc_micro",
    "encoder_params",
    "head_params",
    "total_params",
)
EXCLUDED_STATES = ("failed", "running")  # stopped trials were measured; these may hold partial metrics
_NAMES = {
    "test_acc": "test accuracy",
    "finetune_val_acc": "fine-tune val accuracy",
    "test_auc_micro": "test ROC-AUC (micro)",
    "finetune_val_auc_micro": "fine-tune val ROC-AUC (micro)",
}


def human_count(n: float | None) -> str:
    """A parameter count for people: ``950``, ``210K``, ``1.6M`` (three significant digits at most)."""
    if n is None or not np.isfinite(n):
        return "n/a"
    sign, value = ("-" if n < 0 else ""), abs(float(n))
    for suffix, scale in (("", 1.0), ("K", 1e3), ("M", 1e6), ("B", 1e9)):
        text = f"{value / scale:.3g}" if suffix else f"{value:.0f}"
        if float(text) < 1000 or suffix == "B":
            return f"{sign}{text}{suffix}"
    raise AssertionError("unreachable")


def _name(objective: str) -> str:
    return _NAMES.get(objective, objective.replace("_", " "))


def _fmt(objective: str, value: float) -> str:
    """Accuracies as percentages, anything else (AUC) as a fraction."""
    if not np.isfinite(value):
        return ""
    return f"{100 * value:.1f}%" if objective.endswith("acc") else f"{value:.3f}"


def trials_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per trial with numeric columns as float and missing values as NaN.

    Args:
        records: Flat dicts with ``trial``, ``state``, the config keys in `CONFIG_KEYS` and the metrics in
            `METRIC_KEYS`; absent keys, None and unparsable values become NaN, extra keys are kept.

    Returns:
        The frame; ``state`` is lower-case and ``total_params`` is filled from encoder + head where absent.
    """
    df = pd.DataFrame([dict(r) for r in records])
    for col in ("trial", "state", *CONFIG_KEYS, *METRIC_KEYS):
        if col not in df:
            df[col] = np.nan
    df["trial"] = df["trial"].where(df["trial"].notna(), [f"trial_{i}" for i in range(len(df))]).astype(str)
    state = df["state"].fillna("").astype(str).str.strip().str.lower()
    df["state"] = state.replace({"": "unknown", "stopped early": "stopped"})
    for col in (*CONFIG_KEYS, *METRIC_KEYS):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["total_params"] = df["total_params"].fillna(df["encoder_params"] + df["head_params"])
    return df


def _eligible(df: pd.DataFrame, *cols: str) -> pd.Series:
    """Rows not in an excluded state whose ``cols`` are all finite."""
    ok = ~df["state"].isin(EXCLUDED_STATES)
    for col in cols:
        ok &= np.isfinite(df[col].to_numpy(dtype=float))
    return ok


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
    parts = []
    for tag, key in (("e", "model.embed_dim"), ("d", "model.depth"), ("p", "model.patch_size")):
        value = pd.to_numeric(row.get(key), errors="coerce")
        parts.append(f"{tag}{int(value)}" if pd.notna(value) else f"{tag}?")
    return "·".join(parts)


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
    out = best[cols].reset_index(drop=True)
    return out.astype({"encoder_params": "Int64", "head_params": "Int64"})


def _objective_of(table: pd.DataFrame) -> str:
    return next(c for c in table.columns if c.startswith("best_")).removeprefix("best_")


def tradeoff_pivot(table: pd.DataFrame) -> pd.DataFrame:
    """Encoder sizes (rows, table order) against head depths (columns, ascending) of the best objective."""
    value = f"best_{_objective_of(table)}"
    pivot = table.pivot(index="encoder", columns="head_depth", values=value).astype(float)
    return pivot.reindex(index=table["encoder"].unique(), columns=sorted(table["head_depth"].unique()))


def write_tradeoff_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the tidy trade-off table as CSV (no index) and return the path."""
    path = Path(path)
    table.to_csv(path, index=False)
    return path


def _render(table: Table) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(table)
    return console.export_text()


def format_table(table: pd.DataFrame) -> str:
    """The trade-off as terminal text: encoders down, head depths across, best value and head per cell."""
    objective = _objective_of(table)
    out = Table(title=f"best {_name(objective)}: encoder size x head depth")
    out.add_column("encoder")
    out.add_column("enc params", justify="right")
    depths = sorted(table["head_depth"].unique())
    for depth in depths:
        out.add_column(f"head depth {depth}", justify="right")
    for encoder, rows in table.groupby("encoder", sort=False):
        cells = {r.head_depth: r for r in rows.itertuples()}
        values = [cells[d] for d in depths if d in cells]
        winner = max(values, key=lambda r: getattr(r, f"best_{objective}")).head_depth
        texts = [
            f"{getattr(cells[d], f'best_{objective}'):.4f} (head {human_count(cells[d].head_params)})"
            + (" *" if d == winner else "  ")
            if d in cells
            else ""
            for d in depths
        ]
        out.add_row(encoder, human_count(rows["encoder_params"].min()), *texts)
    out.caption = "* best head depth for that encoder"
    return _render(out)


def format_front(df: pd.DataFrame, objective: str = "test_acc", cost: str = "total_params") -> str:
    """The Pareto-front trials as terminal text, cheapest first, with their parameter split and recipe."""
    front = df[pareto_front(df, objective, cost)].sort_values(cost)
    out = Table(title=f"Pareto front: {_name(objective)} vs {cost.replace('_', ' ')}")
    for name in (
        "trial",
        objective,
        "total",
        "encoder",
        "head",
        "embed",
        "depth",
        "patch",
        "mask",
        "head depth",
    ):
        out.add_column(name, justify="left" if name == "trial" else "right")
    for _, r in front.iterrows():
        counts = [human_count(r[k]) for k in ("total_params", "encoder_params", "head_params")]
        shape = [f"{r[k]:.0f}" for k in ("model.embed_dim", "model.depth", "model.patch_size")]
        out.add_row(
            r["trial"],
            f"{r[objective]:.4f}",
            *counts,
            *shape,
            f"{r['model.mask_ratio']:.2f}",
            f"{r['head.depth']:.0f}",
        )
    return _render(out)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def pareto_plot(
    df: pd.DataFrame, path: str | Path, objective: str = "test_acc", cost: str = "total_params"
) -> Path:
    """Scatter of ``objective`` against parameters (log x) coloured by head depth, with the front drawn.

    Finished trials are filled and coloured by head depth; stopped and failed ones are hollow grey. The
    front is a step line through larger edged markers, each annotated with its encoder / head split.
    """
    shown = df[np.isfinite(df[objective]) & np.isfinite(df[cost]) & (df[cost] > 0)]
    front = pareto_front(df, objective, cost).reindex(shown.index)
    depths = sorted(shown["head.depth"].dropna().unique().astype(int))
    palette = plt.get_cmap("viridis", max(len(depths), 2))
    colour = {d: palette(i / max(len(depths) - 1, 1) * 0.9) for i, d in enumerate(depths)}
    fig, ax = plt.subplots(figsize=(8.6, 5.6))
    done = shown["state"].eq("finished") & shown["head.depth"].notna()
    for depth in depths:
        pts = shown[done & shown["head.depth"].eq(depth)]
        ax.scatter(
            pts[cost],
            pts[objective],
            s=46,
            color=colour[depth],
            alpha=0.85,
            zorder=3,
            label=f"head depth {depth}",
        )
    other = shown[~done]
    if len(other):
        ax.scatter(
            other[cost],
            other[objective],
            s=46,
            facecolors="none",
            edgecolors="0.55",
            zorder=2,
            label="stopped / failed",
        )
    best = shown[front].sort_values(cost)
    if len(best):
        ax.step(
            best[cost],
            best[objective],
            where="post",
            color="crimson",
            lw=1.6,
            alpha=0.8,
            zorder=4,
            label="Pareto front",
        )
        faces = [
            colour.get(d, "white") if s == "finished" else "white"
            for d, s in zip(best["head.depth"], best["state"], strict=True)
        ]
        ax.scatter(
            best[cost], best[objective], s=150, c=faces, edgecolors="crimson", linewidths=1.8, zorder=5
        )
        for i, (_, r) in enumerate(best.iterrows()):
            text = (
                f"{encoder_label(r)}, head d{r['head.depth']:.0f}\n"
                f"enc {human_count(r['encoder_params'])} + head {human_count(r['head_params'])}"
            )
            ax.annotate(
                text,
                (r[cost], r[objective]),
                xytext=(10, -26 if i % 2 else 12),
                textcoords="offset points",
                fontsize=7.5,
                zorder=6,
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.8", "alpha": 0.9},
            )
    missing = len(df) - len(shown)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: human_count(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    if objective.endswith("acc"):
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.margins(x=0.12, y=0.12)
    ax.grid(True, which="major", color="0.92")
    ax.set_xlabel(f"{cost.replace('_', ' ')} (count, log scale; encoder + head, decoder excluded)")
    ax.set_ylabel(f"{_name(objective)} ({'%' if objective.endswith('acc') else 'fraction'})")
    note = f"; {missing} without metrics not shown" if missing else ""
    ax.set_title(f"{_name(objective)} vs parameters: {len(shown)} trials{note}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    return _save(fig, path)


def tradeoff_plot(table: pd.DataFrame, path: str | Path, objective: str = "test_acc") -> Path:
    """Heatmap of the best ``objective`` per encoder size (rows) and head depth (columns).

    Each cell shows the value and its trial's "enc X / head Y" parameters; empty cells stay blank, and the
    best head depth of each encoder is outlined.
    """
    pivot = tradeoff_pivot(table)
    values = np.ma.masked_invalid(pivot.to_numpy(dtype=float))
    empty = np.ma.getmaskarray(values)
    cells = table.set_index(["encoder", "head_depth"])
    n_rows, n_cols = pivot.shape
    fig, ax = plt.subplots(figsize=(2.3 * n_cols + 3.2, 0.95 * n_rows + 1.9))
    cmap = plt.get_cmap("YlGnBu").with_extremes(bad="white")
    image = ax.imshow(values, cmap=cmap, aspect="auto")
    for i, encoder in enumerate(pivot.index):
        for j, depth in enumerate(pivot.columns):
            if empty[i, j]:
                continue
            cell = cells.loc[(encoder, depth)]
            shade = image.cmap(image.norm(values[i, j]))
            ink = "white" if 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.55 else "black"
            ax.text(
                j,
                i,
                f"{_fmt(objective, values[i, j])}\nenc {human_count(cell['encoder_params'])} / "
                f"head {human_count(cell['head_params'])}",
                ha="center",
                va="center",
                fontsize=8.5,
                color=ink,
            )
        if not empty[i].all():
            j = int(np.ma.argmax(values[i]))
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="crimson", lw=2.2))
    enc_params = table.groupby("encoder", sort=False)["encoder_params"].min()
    ax.set_yticks(range(n_rows), [f"{e} ({human_count(enc_params[e])})" for e in pivot.index], fontsize=9)
    head_params = table.groupby("head_depth")["head_params"].median()
    ax.set_xticks(
        range(n_cols),
        [f"depth {d}\n(head ~{human_count(head_params[d])})" for d in pivot.columns],
        fontsize=9,
    )
    ax.set_xticks(np.arange(n_cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", lw=2)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("MLP head depth (typical head params)")
    ax.set_ylabel("encoder: embed·depth·patch (encoder params)")
    ax.set_title(
        f"best {_name(objective)} per encoder size and head depth (outlined: best head per encoder)",
        fontsize=10,
    )
    fig.colorbar(
        image,
        ax=ax,
        fraction=0.04,
        pad=0.02,
        label=_name(objective),
        format=PercentFormatter(1.0) if objective.endswith("acc") else None,
    )
    return _save(fig, path)
