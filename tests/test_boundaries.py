"""House rule 2: Ray and MLflow are imported only in the few adapter modules that need them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {
    "ray": {
        "trainers/ray_worker.py",
        "search/tune_driver.py",
        "search/tune_trial.py",
        "search/tune_callback.py",
    },
    "mlflow": {"search/tracking.py"},
}
PURE = ("model", "trainers")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_ray_and_mlflow_only_in_adapters() -> None:
    offenders = []
    for folder in ("model", "trainers", "search", "maetune"):
        for path in (REPO / folder).rglob("*.py"):
            rel = path.relative_to(REPO).as_posix()
            for lib, allowed in ALLOWED.items():
                if lib in _imports(path) and rel not in allowed:
                    offenders.append(f"{rel} imports {lib}")
    assert not offenders, offenders


def test_model_is_pure_torch() -> None:
    for path in (REPO / "model").rglob("*.py"):
        bad = _imports(path) & {"ray", "mlflow", "argparse", "yaml", "matplotlib"}
        assert not bad, f"{path.name} imports {bad}"


def test_lower_layers_never_import_upper_ones() -> None:
    order = {"model": 0, "trainers": 1, "search": 2, "cluster": 2}
    for folder, level in order.items():
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("maetune."):
                    target = node.module.split(".")[1]
                    if target in order:
                        assert order[target] <= level, f"{path.relative_to(REPO)} imports {node.module}"


def test_importing_the_pipeline_loads_neither_ray_nor_mlflow() -> None:
    code = (
        "import sys, maetune.trainers.pipeline, maetune.model; "
        "print(sorted(m for m in ('ray', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
