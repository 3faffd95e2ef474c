"""hydra/launcher=vectorized through the CLI: what MLflow holds after real sweeps.

Members are their own runs under the sweep's parent, carrying what a solo run carries (same
curve, coefficients, params, config_hash), plus the group tags; chunking, divergence, interrupts,
resume, src.reproduce and bad input behave as with the basic launcher.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SWEEP_TAG, loss_history

from src.report.mlflow_ui import NOTE_TAG, sweep_markdown

pytestmark = pytest.mark.slow

VECTORIZED = "hydra/launcher=vectorized"
STUDY = ["experiment=autograd", "seed=0,1,2", "lr=1e-6,2e-6", "steps=300"]


def by_config(runs):
    return {(r.data.params["seed"], r.data.params["lr"]): r for r in runs}


@pytest.fixture(scope="module")
def study(make_store):
    """The same 2 lr x 3 seed sweep, vectorized and with the basic launcher, in one store."""
    store = make_store("vectorized")
    done = store.run_cli("-m", VECTORIZED, *STUDY)
    assert done.returncode == 0, done.describe()
    vectorized = store.job_runs()
    done = store.run_cli("-m", *STUDY)
    assert done.returncode == 0, done.describe()
    solo = [r for r in store.job_runs() if r.info.run_id not in {v.info.run_id for v in vectorized}]
    return store, by_config(vectorized), by_config(solo)


def test_members_carry_what_solo_runs_carry(study):
    store, vectorized, solo = study
    client = store.client()
    assert len(vectorized) == len(solo) == 6
    for key, member in vectorized.items():
        twin = solo[key]
        assert member.info.status == twin.info.status == "FINISHED"
        assert loss_history(client, member.info.run_id) == loss_history(client, twin.info.run_id)
        assert len(loss_history(client, member.info.run_id)) == 300
        # the latest-metric record (the UI's runs table) is the curve's last value
        assert member.data.metrics["loss"] == loss_history(client, member.info.run_id)[-1][1]
        timing = {"wall_time_s", "group_wall_time_s"}
        assert {k: v for k, v in member.data.metrics.items() if k not in timing} == \
            {k: v for k, v in twin.data.metrics.items() if k not in timing}
        assert {"final_loss", "gap", "coef/a", "coef/d"} <= set(member.data.metrics)
        assert member.data.params == twin.data.params
        for tag in ("config_hash", "variant", "formula", "diverged", "mlflow.parentRunId"):
            assert tag in member.data.tags
        assert member.data.tags["config_hash"] == twin.data.tags["config_hash"]
        assert member.data.tags["formula"] == twin.data.tags["formula"]
        artifacts = {a.path for a in client.list_artifacts(member.info.run_id)}
        assert {"config.yaml", "overrides.yaml"} <= artifacts


def test_members_of_one_lr_form_one_group(study):
    store, vectorized, _ = study
    groups = {}
    for (seed, lr), member in vectorized.items():
        tags, metrics = member.data.tags, member.data.metrics
        assert tags["vectorized.size"] == "3"
        groups.setdefault(lr, set()).add(tags["vectorized.group"])
        assert metrics["wall_time_s"] * 3 == pytest.approx(metrics["group_wall_time_s"])
    assert all(len(ids) == 1 for ids in groups.values())
    assert len(set.union(*groups.values())) == 2
    parents = {m.data.tags["mlflow.parentRunId"] for m in vectorized.values()}
    (parent,) = parents
    parent_run = store.client().get_run(parent)
    assert parent_run.data.tags[SWEEP_TAG] == "true"
    assert parent_run.data.metrics["n_finished"] == 6
    # the parent's table, made from what the recorder wrote, is what the store holds
    children = store.client().search_runs([parent_run.info.experiment_id],
                                          f"tags.`mlflow.parentRunId` = '{parent}'")
    assert parent_run.data.tags[NOTE_TAG] == sweep_markdown(children)
    # one loss band and one fit band per group on the parent, instead of per-member PNGs
    client = store.client()
    for group_id in set.union(*groups.values()):
        drawn = {a.path for a in client.list_artifacts(parent, f"groups/{group_id}")}
        assert drawn == {f"groups/{group_id}/loss_band.png", f"groups/{group_id}/fit_band.png"}
        for path in drawn:  # drawn by the training process, uploaded by its recorder
            png = Path(client.download_artifacts(parent, path, str(store.root / "png")))
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    for member in vectorized.values():
        assert not any(a.path.endswith(".png") for a in client.list_artifacts(member.info.run_id))


def test_max_batch_runs_large_groups_in_chunks(store):
    done = store.run_cli("-m", VECTORIZED, "hydra.launcher.max_batch=2", "experiment=tensor",
                         "seed=range(5)", "steps=20")
    assert done.returncode == 0, done.describe()
    runs = store.job_runs()
    sizes = sorted(int(r.data.tags["vectorized.size"]) for r in runs)
    assert sizes == [1, 2, 2, 2, 2]
    assert len({r.data.tags["vectorized.group"] for r in runs}) == 3
    assert all(r.info.status == "FINISHED" for r in runs)


def test_a_diverging_member_fails_alone(store):
    done = store.run_cli("-m", VECTORIZED, "experiment=dynamic", "lr=3e-8", "steps=3000",
                         "seed=0,3")
    assert done.returncode == 0, done.describe()
    runs = {r.data.params["seed"]: r for r in store.job_runs()}
    diverged, finished = runs["0"], runs["3"]
    assert diverged.info.status == "FAILED"
    assert diverged.data.tags["diverged"] == "true"
    assert diverged.data.tags["diverged_step"] == "2575"
    assert len(loss_history(store.client(), diverged.info.run_id)) == 2575
    assert finished.info.status == "FINISHED" and finished.data.tags["diverged"] == "false"
    assert len(loss_history(store.client(), finished.info.run_id)) == 3000


def test_bad_input_is_refused_before_anything_starts(store):
    for bad, key in ((["lr=-1"], "lr=-1"), (["hydra.launcher.max_batch=0"], "max_batch")):
        done = store.run_cli("-m", VECTORIZED, "experiment=autograd", "seed=0,1", *bad)
        assert done.returncode == 2, done.describe()
        assert len(done.stderr_lines) == 1 and done.stderr_lines[0].startswith("error: ")
        assert key in done.stderr_lines[0]
    assert store.runs() == []


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupting_a_group_kills_every_member_with_its_curve(store, signum, code):
    proc = store.popen(["-m", VECTORIZED, "experiment=dynamic", "seed=range(3)"])
    try:
        for line in proc.stdout:  # the group's progress line at step 1999 (log_every 2000)
            if line.startswith("1999 "):
                break
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err[-2000:]
    runs = store.job_runs()
    assert len(runs) == 3
    lengths = set()
    for run in runs:
        assert run.info.status == "KILLED"
        history = loss_history(store.client(), run.info.run_id)
        assert [s for s, _ in history] == list(range(len(history)))
        lengths.add(len(history))
    (length,) = lengths  # one batched loop: every member stopped at the same step
    assert 2000 <= length < 30000
    (parent,) = [r for r in store.runs() if r.data.tags.get(SWEEP_TAG) == "true"]
    assert parent.info.status == "KILLED"


def test_resume_skips_finished_members(store):
    first = store.run_cli("-m", VECTORIZED, "experiment=tensor", "seed=0,1", "steps=30")
    assert first.returncode == 0, first.describe()
    again = store.run_cli("-m", VECTORIZED, "experiment=tensor", "seed=0,1,2", "steps=30",
                          "resume=true")
    assert again.returncode == 0, again.describe()
    runs = store.job_runs()
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1", "2"]
    (new,) = [r for r in runs if r.data.params["seed"] == "2"]
    assert new.data.tags["vectorized.size"] == "1"


def test_reproduce_a_member_run(store):
    done = store.run_cli("-m", VECTORIZED, "experiment=module", "seed=4,5", "steps=200")
    assert done.returncode == 0, done.describe()
    member = next(r for r in store.job_runs() if r.data.params["seed"] == "5")
    again = subprocess.run([sys.executable, "-m", "src.reproduce", member.info.run_id],
                           cwd=store.cwd, env=store.env(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "identical" in again.stdout
