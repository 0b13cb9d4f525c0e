"""Bad input: one clear line naming the problem, a non-zero exit, no traceback, nothing lost."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO, run_cli

SMOKE = str(REPO / "configs/smoke.yaml")


def _assert_one_line_error(proc, fragment: str) -> None:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("maetune: error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model.embed_dims=64"], "unknown config key 'model.embed_dims'"),
        (["model.depth=two"], "model.depth must be an integer"),
        (["model.patch_size=3"], "does not divide the image size 8"),
        (["model.num_heads=5"], "not divisible by model.num_heads=5"),
        (["model.mask_ratio=1.5"], "model.mask_ratio must be in [0, 1)"),
    ],
)
def test_bad_config(tmp_path, overrides, fragment) -> None:
    args = ["run", "--config", SMOKE]
    for o in overrides:
        args += ["--set", o]
    _assert_one_line_error(run_cli(args, cwd=tmp_path), fragment)


def _deeplense_folder(root, pickled_axion: bool = False, classes=("axion", "cdm", "no_sub")):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(6):
            img = rng.random((64, 64))
            if c == "axion" and pickled_axion:
                arr = np.empty(2, dtype=object)
                arr[0], arr[1] = img, 1e-23
                np.save(root / c / f"{i}.npy", arr, allow_pickle=True)
            else:
                np.save(root / c / f"{i}.npy", img)
    return root


def test_missing_data_folder(tmp_path) -> None:
    proc = run_cli(
        [
            "run",
            "--config",
            SMOKE,
            "--set",
            "data.name=deeplense",
            "--set",
            f"data.path={tmp_path / 'nowhere'}",
        ],
        cwd=tmp_path,
    )
    _assert_one_line_error(proc, "nowhere")


def test_pickled_npy_without_opt_in(tmp_path) -> None:
    root = _deeplense_folder(tmp_path / "lens", pickled_axion=True)
    proc = run_cli(
        [
            "run",
            "--config",
            SMOKE,
            "--set",
            "data.name=deeplense",
            "--set",
            f"data.path={root}",
            "--set",
            "model.patch_size=8",
        ],
        cwd=tmp_path,
    )
    _assert_one_line_error(proc, "allow_pickle")


def test_corrupt_npy(tmp_path) -> None:
    root = _deeplense_folder(tmp_path / "lens")
    (root / "cdm" / "3.npy").write_bytes(b"this is not a numpy file")
    proc = run_cli(
        [
            "run",
            "--config",
            SMOKE,
            "--set",
            "data.name=deeplense",
            "--set",
            f"data.path={root}",
            "--set",
            "model.patch_size=8",
        ],
        cwd=tmp_path,
    )
    _assert_one_line_error(proc, "3.npy")


def test_one_class_only(tmp_path) -> None:
    root = _deeplense_folder(tmp_path / "lens", classes=("no_sub",))
    proc = run_cli(
        [
            "run",
            "--config",
            SMOKE,
            "--set",
            "data.name=deeplense",
            "--set",
            f"data.path={root}",
            "--set",
            "model.patch_size=8",
        ],
        cwd=tmp_path,
    )
    _assert_one_line_error(proc, "one class")


def test_missing_config_file(tmp_path) -> None:
    _assert_one_line_error(run_cli(["run", "--config", "nope.yaml"], cwd=tmp_path), "does not exist")


def test_bad_data_does_not_touch_earlier_runs(tmp_path) -> None:
    # A failing run must not create or damage anything in an existing store.
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("maetune-smoke")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "test_acc", 0.5)
    proc = run_cli(
        [
            "run",
            "--config",
            SMOKE,
            "--set",
            "data.name=deeplense",
            "--set",
            f"data.path={tmp_path / 'nowhere'}",
        ],
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri},
    )
    assert proc.returncode != 0
    runs = client.search_runs([exp])
    assert len(runs) == 1 and runs[0].data.metrics["test_acc"] == 0.5


def test_empty_search_space(tmp_path) -> None:
    proc = run_cli(["search", "--config", SMOKE, "--set", "search.space={}"], cwd=tmp_path)
    _assert_one_line_error(proc, "search.space is empty")


def test_contradictory_search_space(tmp_path) -> None:
    # 8x8 digits: neither patch 3 nor patch 5 divides the image
    proc = run_cli(
        ["search", "--config", SMOKE, "--set", "search.space={model.patch_size: [3, 5]}"], cwd=tmp_path
    )
    _assert_one_line_error(proc, "model.patch_size")


def test_unreachable_tracking_server(tmp_path) -> None:
    proc = run_cli(
        ["search", "--config", SMOKE], cwd=tmp_path, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    )
    _assert_one_line_error(proc, "http://127.0.0.1:9 is not reachable")
    assert not (tmp_path / "maetune-results").exists()  # nothing started


def test_unknown_experiment_for_report(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli(["report", "--experiment", "nope"], cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    _assert_one_line_error(proc, "'nope' does not exist")


def test_unreachable_ray_address(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli(
        ["run", "--config", SMOKE, "--address", "127.0.0.1:9"],
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri},
        timeout=120,
    )
    _assert_one_line_error(proc, "Ray cluster at 127.0.0.1:9 is not reachable")
    from mlflow.tracking import MlflowClient

    exp = MlflowClient(uri).get_experiment_by_name("maetune-smoke")
    assert exp is None or not MlflowClient(uri).search_runs([exp.experiment_id])  # no run recorded
