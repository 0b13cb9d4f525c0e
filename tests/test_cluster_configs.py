"""The cluster files as their consumers read them: the launcher YAML through Ray's own schema, the RayJob
manifest against (a subset of) KubeRay's CRD and the operator's own rules, the runtime_env through
Ray's RuntimeEnv, the working-dir upload through Ray's own packer. No Ray cluster is started."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import zipfile
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from conftest import REPO

CLUSTER = REPO / "cluster"
CRD_SUBSET = REPO / "tests" / "data" / "kuberay_rayjob_v1_subset.json"
NOT_UPLOADED = (".git/", ".venv/", ".ci-venv/", "maetune-results/", "mlruns/", "mlartifacts/", "mlflow.db")
SOURCES = ("maetune/", "model/", "trainers/", "search/", "cluster/")


def _launcher() -> dict:
    return yaml.safe_load((CLUSTER / "gpu-cluster.yaml").read_text())


def _rayjob() -> dict:
    return yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())


def test_launcher_config_passes_rays_own_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(_launcher())  # what `ray up` does before it talks to AWS
    validate_config(cfg)
    head = cfg["available_node_types"][cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    gpu = cfg["available_node_types"]["gpu_worker"]
    assert gpu["min_workers"] == 0 < gpu["max_workers"] <= cfg["max_workers"]
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    setup = " ".join(cfg["setup_commands"])
    assert "~/maetune" in setup and f"ray[default,tune,train]=={ray.__version__}" in setup
    assert "/mnt/shared" in setup
    starts = cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert any("--dashboard-host=127.0.0.1" in c for c in cfg["head_start_ray_commands"])
    assert any("maetune ui" in c for c in cfg["head_start_ray_commands"])


def test_launcher_validation_refuses_a_typo() -> None:
    """The check above is live: Ray's schema refuses unknown keys."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = _launcher()
    bad["available_node_types"]["gpu_worker"]["max_worker"] = 2
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(bad))


def test_rayjob_matches_the_kuberay_crd() -> None:
    schema = json.loads(CRD_SUBSET.read_text())
    manifest = _rayjob()
    jsonschema.validate(manifest, schema)
    for path, value, message in (
        (("spec", "rayClusterSpec", "workerGroupSpecs", 0, "maxReplica"), 4, "maxReplica"),
        (("spec", "rayClusterSpec", "authOptions", "mode"), "tokens", "tokens"),
        (("spec", "entryPoint"), "maetune", "entryPoint"),
    ):
        bad = copy.deepcopy(manifest)
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError, match=message):
            jsonschema.validate(bad, schema)


def test_rayjob_passes_the_operators_rules() -> None:
    """Rules of KubeRay v1.7.0 ray-operator/controllers/ray/utils/validation.go that a schema cannot say."""
    manifest = _rayjob()
    spec, cluster = manifest["spec"], manifest["spec"]["rayClusterSpec"]
    name = manifest["metadata"]["name"]
    assert len(name) <= 47 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)  # DNS-1035, 53 - 6
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["rayVersion"] == ray.__version__  # token mode needs rayVersion >= 2.52.0
    assert tuple(int(x) for x in cluster["rayVersion"].split(".")[:2]) >= (2, 52)
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
    for group in cluster["workerGroupSpecs"]:
        assert group["template"]["spec"]["containers"]
        assert 0 <= group["minReplicas"] <= group["maxReplicas"]
    assert spec["shutdownAfterJobFinishes"] and spec["ttlSecondsAfterFinished"] >= 0
    assert spec["activeDeadlineSeconds"] > 0 and spec["backoffLimit"] >= 0
    assert "deletionStrategy" not in spec  # needs a feature gate; shutdownAfterJobFinishes does the job


def test_rayjob_runs_a_valid_seed_search() -> None:
    from ray.runtime_env import RuntimeEnv

    from maetune.cli import build_parser
    from maetune.search.config import load_search
    from maetune.search.space import SearchSpace

    spec = _rayjob()["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["maetune", "search"]
    args = build_parser().parse_args(argv[1:])
    assert args.config.startswith("seed-")
    base, search, _ = load_search(args.config, args.overrides)
    assert base.train.use_gpu and base.train.storage_path.startswith("/mnt/shared/")
    space = SearchSpace(base, search, num_classes=3)  # raises on an empty or infeasible space
    assert space.describe()["feasible"] >= search.max_concurrent_trials
    env = RuntimeEnv(**yaml.safe_load(spec["runtimeEnvYAML"]))
    assert env["env_vars"]["MLFLOW_TRACKING_URI"].startswith("http")
    workers = _rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    limits = workers["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= base.train.num_workers  # one trial fits a pod
    assert int(limits["cpu"]) >= base.train.num_workers * base.train.cpus_per_worker


def test_runtime_env_example_is_a_valid_runtime_env() -> None:
    from ray.runtime_env import RuntimeEnv

    raw = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    env = RuntimeEnv(**raw)
    assert env["working_dir"] == "."
    assert env["env_vars"]["MLFLOW_TRACKING_URI"].startswith("http://")
    assert "maetune-results/" in env["excludes"]


def _pack(root: Path, out: Path, excludes: list[str]) -> list[str]:
    """The working-dir upload as Ray packs it (.gitignore, .rayignore, runtime_env excludes)."""
    from ray._private.runtime_env.packaging import _zip_files

    _zip_files(str(root), excludes, str(out), include_gitignore=True)
    return zipfile.ZipFile(out).namelist()


def test_working_dir_upload_leaves_out_data_results_and_sources(tmp_path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in (".gitignore", ".rayignore"):
        shutil.copy(REPO / name, repo / name)
    shutil.copytree(REPO / "configs", repo / "configs")
    for folder in (*SOURCES, *NOT_UPLOADED):
        path = repo / folder.rstrip("/")
        if folder.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            path = path / "__init__.py"
        path.write_bytes(b"x" * 1000)
    names = _pack(repo, tmp_path / "pkg.zip", [])
    assert "configs/smoke.yaml" in names and "configs/seed-256.yaml" in names
    leaked = [n for n in names if n.startswith(NOT_UPLOADED + SOURCES)]
    assert not leaked, leaked


def test_working_dir_upload_of_this_checkout_is_small(tmp_path) -> None:
    names = _pack(REPO, tmp_path / "pkg.zip", [])
    size = (tmp_path / "pkg.zip").stat().st_size
    assert size < 10 * 2**20, f"{size / 2**20:.1f} MiB (Ray refuses 100 MiB)"
    assert not [n for n in names if n.startswith(NOT_UPLOADED + SOURCES)]
    assert "configs/smoke.yaml" in names
