"""The study report: Pareto front, encoder-size x head-depth trade-off, CSV, terminal text, figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from maetune.search import report


def _rec(
    trial: str,
    acc: float,
    enc: float,
    head: float,
    *,
    state: str = "finished",
    embed: int = 64,
    depth: int = 4,
    patch: int = 8,
    head_depth: int = 1,
    **extra: Any,
) -> dict[str, Any]:
    rec = {
        "trial": trial,
        "state": state,
        "model.embed_dim": embed,
        "model.depth": depth,
        "model.patch_size": patch,
        "model.mask_ratio": 0.75,
        "head.depth": head_depth,
        "head.width": 256,
        "finetune_val_acc": acc,
        "finetune_val_auc_micro": 0.9,
        "test_acc": acc,
        "test_auc_micro": 0.9,
        "encoder_params": enc,
        "head_params": head,
        "total_params": enc + head,
    }
    rec.update(extra)
    return rec


@pytest.fixture
def front_df() -> pd.DataFrame:
    return report.trials_frame(
        [
            _rec("a", 0.90, 90, 10),  # on the front
            _rec("a_twin", 0.90, 95, 5),  # same objective and cost as a: both stay on the front
            _rec("b", 0.90, 140, 10),  # same accuracy as a, more params: dominated
            _rec("c", 0.95, 190, 10),  # on the front
            _rec("d", 0.93, 190, 10),  # same cost as c, lower accuracy: dominated
            _rec("e", 0.80, 45, 5, state="stopped"),  # stopped but measured: cheapest, on the front
            _rec("f", 0.99, 5, 5, state="failed"),  # failed: never on the front, would dominate all
            _rec("g", float("nan"), 10, 10),  # no objective
            _rec("h", 0.97, float("nan"), float("nan"), total_params=None),  # no cost
            {"trial": "i", "state": "failed"},  # nothing at all
        ]
    )


def test_trials_frame_normalizes_types_and_keeps_missing(front_df: pd.DataFrame) -> None:
    assert len(front_df) == 10
    assert front_df["test_acc"].dtype == float and front_df["model.depth"].dtype == float
    row = front_df.set_index("trial").loc["i"]
    assert math.isnan(row["test_acc"]) and math.isnan(row["total_params"])
    frame = report.trials_frame(
        [{"trial": 7, "state": "Stopped early", "encoder_params": "100", "head_params": 20}]
    )
    assert frame.loc[0, "trial"] == "7" and frame.loc[0, "state"] == "stopped"
    assert frame.loc[0, "total_params"] == 120.0  # filled from encoder + head


def test_pareto_front_known_set(front_df: pd.DataFrame) -> None:
    front = report.pareto_front(front_df)
    assert front.index.equals(front_df.index)
    assert set(front_df.loc[front, "trial"]) == {"a", "a_twin", "c", "e"}


def test_pareto_front_other_objective_and_empty() -> None:
    df = report.trials_frame([_rec("x", 0.5, 10, 0, test_auc_micro=0.99), _rec("y", 0.9, 20, 0)])
    assert report.pareto_front(df, objective="test_auc_micro").tolist() == [True, False]
    assert report.pareto_front(df, cost="encoder_params").tolist() == [True, True]
    empty = report.trials_frame([{"trial": "z", "state": "failed"}])
    assert not report.pareto_front(empty).any()


def test_human_count_and_encoder_label() -> None:
    assert [report.human_count(n) for n in (950, 210_000, 1_600_000, 1_634_567, 999_999, 2.5e9)] == [
        "950",
        "210K",
        "1.6M",
        "1.63M",
        "1M",
        "2.5B",
    ]
    assert report.human_count(float("nan")) == "n/a"
    row = {"model.embed_dim": 128.0, "model.depth": 8, "model.patch_size": 8}
    assert report.encoder_label(row) == "e128·d8·p8"


@pytest.fixture
def trade_df() -> pd.DataFrame:
    small = {"embed": 64, "depth": 2}
    big = {"embed": 128, "depth": 8}
    return report.trials_frame(
        [
            _rec("s1a", 0.70, 100_000, 1_000, head_depth=1, **small),
            _rec("s1b", 0.72, 100_000, 1_000, head_depth=1, **small),  # best small/d1
            _rec("s3", 0.85, 100_000, 300_000, head_depth=3, **small),  # shallow encoder, deep head wins
            _rec("s3bad", 0.99, 100_000, 300_000, head_depth=3, state="failed", **small),  # ignored
            _rec("b1", 0.91, 1_600_000, 2_000, head_depth=1, **big),
            _rec("b1tie", 0.91, 1_600_000, 1_500, head_depth=1, **big),  # tie: fewer params wins
            _rec("b3", 0.89, 1_600_000, 700_000, head_depth=3, **big),
            _rec("b2", float("nan"), 1_600_000, 70_000, head_depth=2, state="stopped", **big),  # no value
        ]
    )


def test_tradeoff_table_cells_and_params(trade_df: pd.DataFrame) -> None:
    table = report.tradeoff_table(trade_df)
    assert list(table.columns) == [
        "encoder",
        "encoder_params",
        "head_depth",
        "head_params",
        "best_test_acc",
        "trial",
    ]
    assert table[["encoder", "head_depth", "trial"]].values.tolist() == [
        ["e64·d2·p8", 1, "s1b"],
        ["e64·d2·p8", 3, "s3"],
        ["e128·d8·p8", 1, "b1tie"],
        ["e128·d8·p8", 3, "b3"],
    ]
    assert table["best_test_acc"].tolist() == pytest.approx([0.72, 0.85, 0.91, 0.89])
    assert table["encoder_params"].tolist() == [100_000, 100_000, 1_600_000, 1_600_000]
    assert table["head_params"].tolist() == [1_000, 300_000, 1_500, 700_000]


def test_tradeoff_pivot_shape_and_blank_cells(trade_df: pd.DataFrame) -> None:
    df = pd.concat(
        [trade_df, report.trials_frame([_rec("m2", 0.8, 400_000, 50_000, embed=96, head_depth=2)])],
        ignore_index=True,
    )
    pivot = report.tradeoff_pivot(report.tradeoff_table(df))
    assert pivot.shape == (3, 3)
    assert list(pivot.index) == ["e64·d2·p8", "e96·d4·p8", "e128·d8·p8"]
    assert list(pivot.columns) == [1, 2, 3]
    assert pivot.loc["e128·d8·p8", 3] == pytest.approx(0.89)
    assert np.isnan(pivot.loc["e64·d2·p8", 2]) and np.isnan(pivot.loc["e96·d4·p8", 1])


def test_tradeoff_csv_round_trip(trade_df: pd.DataFrame, tmp_path: Path) -> None:
    table = report.tradeoff_table(trade_df, objective="test_auc_micro")
    path = report.write_tradeoff_csv(table, tmp_path / "tradeoff.csv")
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, table, check_dtype=False)


def test_format_table_and_front(trade_df: pd.DataFrame) -> None:
    text = report.format_table(report.tradeoff_table(trade_df))
    for needle in ("e64·d2·p8", "e128·d8·p8", "0.7200", "0.8500", "0.9100", "0.8900", "head depth 3"):
        assert needle in text
    front = report.format_front(trade_df)
    assert "b1tie" in front and "s1b" in front and "s3bad" not in front and "1.6M" in front


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and float(pixels[..., :3].std()) > 0.01


def test_plots_write_real_pngs(trade_df: pd.DataFrame, front_df: pd.DataFrame, tmp_path: Path) -> None:
    _assert_png(report.pareto_plot(trade_df, tmp_path / "pareto.png"))
    _assert_png(report.pareto_plot(front_df, tmp_path / "pareto_mixed.png", objective="test_auc_micro"))
    _assert_png(report.tradeoff_plot(report.tradeoff_table(trade_df), tmp_path / "tradeoff.png"))
