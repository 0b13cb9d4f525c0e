"""The documented cluster flow against real servers on 127.0.0.1: a Ray head with token auth, an MLflow server
(SQLite, proxied artifacts), a smoke search sent with the plain `ray job submit`, the results read back
through MLflow's REST API, `maetune reproduce --best` against that server, the token refused or accepted
by the job server, and the MLflow UI in headless Chromium. One search serves every test here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, run_cli

from maetune.cluster import auth, local, mlflow_server

EXPERIMENT = "maetune-smoke"
FAST = ["pretrain.epochs=2", "probe.epochs=2", "finetune.epochs=2"]
REPORT_ARTIFACTS = {"pareto.png", "tradeoff.csv", "tradeoff.png", "best_config.yaml"}


@dataclass(frozen=True)
class Servers:
    tmp: Path
    env: dict[str, str]  # a client environment: token mode on, the token file in tmp
    head: local.HeadState
    mlflow: mlflow_server.MlflowServer


def _leftovers(marker: str) -> list[str]:
    """Processes whose command line mentions ``marker`` (the head's private temp dir)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append(f"{proc.name}: {cmd[:120]}")
    return found


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A Ray head and an MLflow server, both on 127.0.0.1, stopped at the end whatever happens."""
    tmp = tmp_path_factory.mktemp("cluster")
    ray_tmp = tempfile.mkdtemp(prefix="mt-ray-", dir="/tmp")  # short: Ray's socket paths live below it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", auth.TOKEN, "MLFLOW_TRACKING_URI")}
    env.update({auth.TOKEN_PATH: str(tmp / "auth_token"), auth.AUTH_MODE: "token"})
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "5"  # Ray waits 30 s for Serve replicas we do not have
    started = time.monotonic()
    head = mlflow = None
    try:
        head = local.start_head(local.free_port(), local.free_port(), ray_tmp, num_cpus=2, env=env)
        mlflow = mlflow_server.start_server(
            f"sqlite:///{tmp / 'mlflow.db'}",
            str(tmp / "artifacts"),
            port=local.free_port(),
            log=tmp / "mlflow.log",
        )
        print(f"\nservers up in {time.monotonic() - started:.1f} s: {head.dashboard_url}, {mlflow.url}")
        yield Servers(tmp, env, head, mlflow)
    finally:
        if mlflow is not None:
            mlflow_server.stop_server(mlflow)
        local.stop_head(ray_tmp)
        left = _leftovers(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
        assert not left, f"processes of the test's Ray head outlived it: {left}"


def _get(url: str, **params: str) -> dict:
    with urllib.request.urlopen(f"{url}?{urllib.parse.urlencode(params)}", timeout=30) as resp:
        return json.load(resp)


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def _search_runs(mlflow_url: str, experiment_id: str, filter_string: str) -> list[dict]:
    body = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 1000}
    return _post(f"{mlflow_url}/api/2.0/mlflow/runs/search", body).get("runs", [])


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _metrics(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def _job_client(servers: Servers):
    from ray.job_submission import JobSubmissionClient

    token = auth.read_token(servers.env)
    return JobSubmissionClient(servers.head.dashboard_url, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def search_job(servers):
    """The documented `ray job submit` of a smoke search, waited on until it ends."""
    started = time.monotonic()
    storage = servers.tmp / "results"
    runtime_env = json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": servers.mlflow.url}})
    sets = [a for o in [f"train.storage_path={storage}", *FAST] for a in ("--set", o)]
    job_id = f"maetune-e2e-{int(time.time())}"
    argv = [
        str(Path(sys.executable).with_name("ray")),
        "job", "submit", "--address", servers.head.dashboard_url, "--working-dir", ".",
        "--runtime-env-json", runtime_env, "--submission-id", job_id, "--no-wait",
        "--", "maetune", "search", "--config", "configs/smoke.yaml", *sets,
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO, env=servers.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = _job_client(servers)
    deadline = time.monotonic() + 1200
    status = None
    while time.monotonic() < deadline:
        status = str(client.get_job_status(job_id))
        if status.endswith(("SUCCEEDED", "FAILED", "STOPPED")):
            break
        time.sleep(5)
    logs = client.get_job_logs(job_id)
    (servers.tmp / "job.log").write_text(logs)
    assert status and status.endswith("SUCCEEDED"), f"job {job_id} ended {status}:\n{logs[-5000:]}"
    seconds = time.monotonic() - started
    print(f"\nsmoke search job {job_id} SUCCEEDED in {seconds:.1f} s")
    return job_id, logs, seconds


@pytest.mark.ray
@pytest.mark.mlflow
@pytest.mark.slow
def test_submitted_search_lands_in_the_mlflow_server(servers, search_job) -> None:
    started = time.monotonic()
    _, logs, job_seconds = search_job
    assert "Trade-off" in logs and "Best configuration" in logs
    url = servers.mlflow.url
    exp = _get(f"{url}/api/2.0/mlflow/experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"]
    assert exp["artifact_location"].startswith("mlflow-artifacts:")  # stored by the server, not the job
    parents = _search_runs(url, exp["experiment_id"], "tags.`maetune.role` = 'search'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent["info"]["status"] == "FINISHED"
    parent_id = parent["info"]["run_id"]
    children = _search_runs(url, exp["experiment_id"], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(children) == 4
    finished = []
    for child in children:
        tags, metrics = _tags(child), _metrics(child)
        assert tags["maetune.role"] == "trial" and tags["maetune.trial_id"]
        assert {"pretrain_loss", "probe_val_acc"} <= metrics.keys()
        if tags["maetune.state"] == "finished":
            finished.append(child["info"]["run_id"])
            assert {
                "test_acc",
                "test_auc_micro",
                "encoder_params",
                "head_params",
                "total_params",
            } <= metrics.keys()
    best = _tags(parent)["maetune.best_run_id"]
    assert best in finished
    history = _get(f"{url}/api/2.0/mlflow/metrics/get-history", run_id=best, metric_key="pretrain_loss")
    assert {m["step"] for m in history["metrics"]} == {0, 1}  # the two pretraining epochs
    files = {f["path"] for f in _get(f"{url}/api/2.0/mlflow/artifacts/list", run_id=parent_id)["files"]}
    assert files >= REPORT_ARTIFACTS
    query = urllib.parse.urlencode({"path": "pareto.png", "run_uuid": parent_id})
    with urllib.request.urlopen(f"{url}/get-artifact?{query}", timeout=30) as resp:
        assert resp.read(8) == b"\x89PNG\r\n\x1a\n"
    assert any((servers.tmp / "artifacts").rglob("pareto.png"))  # the server's artifact root holds it

    repro_env = {
        **servers.env,
        "MLFLOW_TRACKING_URI": url,
        "RAY_ADDRESS": servers.head.gcs_address,  # rerun on the same cluster, as a user would
    }
    proc = run_cli(
        ["reproduce", "--best", "--experiment", EXPERIMENT], cwd=servers.tmp, env=repro_env, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "test_acc" in proc.stdout and "DIFFERS" not in proc.stdout
    repro = _search_runs(url, exp["experiment_id"], f"tags.`maetune.reproduction_of` = '{best}'")
    assert len(repro) == 1 and repro[0]["info"]["status"] == "FINISHED"
    total = job_seconds + time.monotonic() - started
    timings = {"search_job_s": round(job_seconds, 1), "search_rest_reproduce_s": round(total, 1)}
    (servers.tmp / "timings.json").write_text(json.dumps(timings))
    print(f"\nsearch job + REST checks + reproduce: {total:.1f} s")


def _status(url: str, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.ray
def test_job_server_refuses_clients_without_the_token(servers) -> None:
    jobs = f"{servers.head.dashboard_url}/api/jobs/"
    token = auth.read_token(servers.env)
    assert _status(jobs, {}) == 401
    assert _status(jobs, {"Authorization": "Bearer " + "0" * 64}) == 403
    assert _status(jobs, {"Authorization": f"Bearer {token}"}) == 200

    ray_cli = str(Path(sys.executable).with_name("ray"))
    submit = [
        ray_cli,
        "job",
        "submit",
        "--address",
        servers.head.dashboard_url,
        "--no-wait",
        "--",
        "echo",
        "hi",
    ]
    home = servers.tmp / "empty-home"  # no ~/.ray/auth_token to fall back on
    home.mkdir(exist_ok=True)
    bare = {k: v for k, v in servers.env.items() if not k.startswith("RAY_AUTH")}
    no_token = subprocess.run(
        submit, env={**bare, "HOME": str(home)}, capture_output=True, text=True, timeout=120
    )
    assert no_token.returncode != 0
    assert "Authentication required" in no_token.stdout + no_token.stderr
    wrong = {**bare, "HOME": str(home), auth.AUTH_MODE: "token", auth.TOKEN: "0" * 64}
    wrong_token = subprocess.run(submit, env=wrong, capture_output=True, text=True, timeout=120)
    assert wrong_token.returncode != 0
    listed = subprocess.run(
        [ray_cli, "job", "list", "--address", servers.head.dashboard_url],
        env=servers.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert all(j.entrypoint != "echo hi" for j in _job_client(servers).list_jobs())  # nothing got in


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,900",
)


@pytest.fixture
def browser(tmp_path):
    """Debian's headless Chromium through its own chromedriver (no driver download), a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail(
            "the browser test needs Debian's chromium and chromium-driver: "
            "apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def _wait_for_text(driver, *texts: str, timeout: float = 90) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d) -> bool:
        body = d.find_element(By.TAG_NAME, "body").text
        return all(t in body for t in texts)

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(shown)
    except Exception:
        body = driver.find_element(By.TAG_NAME, "body").text
        missing = [t for t in texts if t not in body]
        raise AssertionError(
            f"not shown at {driver.current_url}: {missing}; page text: {body[:1500]!r}"
        ) from None


def _close_assistant(driver) -> None:
    """MLflow 3's assistant side panel opens by default; closed, the run table gets the width."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()
            return


def _shot(driver, path: Path) -> Path:
    time.sleep(1)  # let the last chart or image finish painting
    driver.save_screenshot(str(path))
    return path


@pytest.mark.browser
@pytest.mark.mlflow
@pytest.mark.ray
@pytest.mark.slow
def test_mlflow_ui_shows_the_search(servers, search_job, browser, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = servers.mlflow.url
    exp = _get(f"{url}/api/2.0/mlflow/experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"]
    exp_id = exp["experiment_id"]
    parent = _search_runs(url, exp_id, "tags.`maetune.role` = 'search'")[0]
    parent_id, parent_name = parent["info"]["run_id"], parent["info"]["run_name"]
    children = _search_runs(url, exp_id, f"tags.mlflow.parentRunId = '{parent_id}'")
    trial_names = [c["info"]["run_name"] for c in children]
    best = _tags(parent)["maetune.best_run_id"]
    best_name = next(c["info"]["run_name"] for c in children if c["info"]["run_id"] == best)

    # The experiment's run table (MLflow 3: #/experiments/<id>/runs), the search's trials unfolded.
    browser.get(f"{url}/#/experiments/{exp_id}/runs")
    _wait_for_text(browser, EXPERIMENT, parent_name)
    _close_assistant(browser)
    expand = f"//div[@role='gridcell'][.//a[contains(@href, '/runs/{parent_id}')]]//button"
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.XPATH, expand))[0].click()
    _wait_for_text(browser, *trial_names)
    experiment_png = _shot(browser, tmp_path / "mlflow_experiment.png")

    # The best trial's run page: its name and its metrics.
    browser.get(f"{url}/#/experiments/{exp_id}/runs/{best}")
    _wait_for_text(browser, best_name, "test_acc", "total_params", "encoder_params")
    _close_assistant(browser)
    run_png = _shot(browser, tmp_path / "mlflow_run.png")

    # The search's artifacts: the Pareto front listed, and shown when picked.
    browser.get(f"{url}/#/experiments/{exp_id}/runs/{parent_id}/artifacts")
    _wait_for_text(browser, parent_name, *sorted(REPORT_ARTIFACTS))
    _close_assistant(browser)
    entry = "//*[normalize-space(text())='pareto.png']"
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.XPATH, entry))[0].click()

    def pareto_shown(d) -> bool:  # the preview is an <img alt="pareto.png"> with a blob: source
        images = d.find_elements(By.CSS_SELECTOR, "img[alt='pareto.png']")
        return any(int(i.get_attribute("naturalWidth") or 0) > 100 for i in images)

    WebDriverWait(browser, 60).until(pareto_shown)
    pareto_png = _shot(browser, tmp_path / "mlflow_pareto.png")

    for png in (experiment_png, run_png, pareto_png):
        assert png.stat().st_size > 20_000, png
    if os.environ.get("MAETUNE_UPDATE_SCREENSHOTS") == "1":  # refresh the README's pictures on demand
        for png in (experiment_png, run_png, pareto_png):
            shutil.copy(png, REPO / "docs" / png.name)
