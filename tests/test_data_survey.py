"""``describe`` / ``plot_examples`` and the ``maetune data`` subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from maetune.cli_data import add_data_parser
from maetune.trainers.data.errors import DataError
from maetune.trainers.data.lensing import simulate
from maetune.trainers.data.survey import describe, plot_examples

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "deeplense-samples"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="maetune")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_describe_the_real_samples() -> None:
    found = describe(REAL)
    assert found["classes"] == ["axion", "cdm", "no_sub"]
    assert found["counts"] == {"axion": 1, "cdm": 1, "no_sub": 1} and found["total"] == 3
    assert found["shape"] == [64, 64] and found["dtype"] == "float64"
    assert found["pixels"]["max"] == 1.0 and 0.85 < found["pixels"]["frac_below_0.1"] < 0.87


def test_describe_and_plot_a_deeplense_format_set(tmp_path: Path) -> None:
    root = simulate(tmp_path / "set", 3, seed=1, workers=1, deeplense_format=True, progress=False)
    with pytest.raises(DataError, match="allow_pickle"):
        describe(root)
    found = describe(root, allow_pickle=True, sample=2)
    assert found["counts"] == {"axion": 3, "cdm": 3, "no_sub": 3}
    assert found["sampled"] == {"axion": 2, "cdm": 2, "no_sub": 2}
    assert found["dtype"] == "object"  # the first file, axion/, holds (image, mass)
    png = plot_examples(root, tmp_path / "grid.png", per_class=2, allow_pickle=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_describe_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="neither a folder"):
        describe(tmp_path / "missing")
    with pytest.raises(DataError, match="by name"):
        describe("npz")  # needs a path


def test_data_simulate_and_info_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim"
    args = parse(
        [
            "data",
            "simulate",
            "--out",
            str(out),
            "--per-class",
            "2",
            "--seed",
            "4",
            "--workers",
            "1",
            "--image-size",
            "32",
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    assert np.load(out / "axion" / "axion_000001.npy").shape == (32, 32)
    assert json.loads((out / "metadata.json").read_text())["seed"] == 4
    assert "wrote 6 images" in capsys.readouterr().out
    args = parse(["data", "info", str(out), "--png", str(tmp_path / "info.png"), "--json"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[: printed.rindex("}") + 1])["total"] == 6
    assert (tmp_path / "info.png").exists()
    with pytest.raises(SystemExit):
        parse(["data", "simulate", "--out", str(out), "--per-class", "0"])
