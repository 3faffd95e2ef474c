"""Scale-out benchmark: basic vs joblib launcher, and per-run tracking cost (SQLite vs server).

Run from anywhere:  python benchmarks/scale.py [--repeats N] [--steps S] [--json PATH]

1. The same 16-run sweep (the dynamic preset, 16 seeds, S steps each: 30000 as in the tutorial,
   about 7 s of training a run, where parallel workers pay off) through Hydra's basic
   launcher and through the joblib launcher on 2 workers, each into a fresh SQLite store, timed
   as whole commands (start-up included). Target: joblib / basic <= 0.65 on 2 cores.
2. The tracking cost of one run (the module preset, 2000 steps), in-process: the time from
   starting a tracked run to having everything written (recorder synced), minus the same
   training without tracking; against a SQLite store and against `mlflow server` on 127.0.0.1.

Repetitions alternate the two sides so that machine noise hits both; medians are reported. On a
shared 2-core machine absolute times wander; the ratios are what matter.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
PYTHON = sys.executable


def timed_sweep(launcher_args: list[str], steps: int, tmp: Path) -> float:
    store = tempfile.mkdtemp(dir=tmp)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db"}
    command = [PYTHON, "-m", "src.train", "-m", *launcher_args, "experiment=dynamic",
               "seed=range(16)", f"steps={steps}", f"hydra.sweep.dir={store}/hydra"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=store, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(launcher_args) or 'basic'}):\n{done.stderr[-3000:]}")
    return elapsed


def launcher_comparison(repeats: int, steps: int, tmp: Path) -> dict:
    basic, joblib = [], []
    for i in range(repeats):
        basic.append(timed_sweep([], steps, tmp))
        joblib.append(timed_sweep(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], steps, tmp))
        print(f"  repeat {i + 1}: basic {basic[-1]:.1f} s, joblib(2) {joblib[-1]:.1f} s")
    ratio = statistics.median(joblib) / statistics.median(basic)
    return {"basic_s": basic, "joblib_s": joblib, "ratio_joblib_over_basic": ratio}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [str(Path(PYTHON).parent / "mlflow"), "server", "--backend-store-uri",
         f"sqlite:///{tmp}/server.db", "--artifacts-destination", str(tmp / "server-artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                return server, uri
        except OSError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    sys.exit("mlflow server did not start")


def tracking_cost(uri: str, repeats: int) -> dict:
    """Seconds a tracked run takes beyond the same training untracked (everything written)."""
    from src.config import compose
    from src.tracking.client import recorder_for
    from src.train import train_tracked
    from src.trainer import fit

    cfg = compose(["experiment=module", f"tracking.uri={uri}", "tracking.experiment=bench"])
    recorder = recorder_for(uri, "bench")
    train_tracked(cfg)  # warm-up: recorder start, store and experiment creation
    recorder.sync()
    tracked, bare = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        train_tracked(cfg)
        recorder.sync()
        tracked.append(time.perf_counter() - start)
        start = time.perf_counter()
        fit(cfg)
        bare.append(time.perf_counter() - start)
    return {"tracked_s": tracked, "bare_s": bare,
            "overhead_per_run_s": statistics.median(tracked) - statistics.median(bare)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30000,
                        help="steps per dynamic run (the preset's own 30000 by default)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    results = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print(f"16-run sweep (dynamic, {args.steps} steps each), basic vs joblib on 2 workers:")
        results["launchers"] = launcher_comparison(args.repeats, args.steps, tmp)

        print("tracking cost of one run (module preset, 2000 steps):")
        results["sqlite"] = tracking_cost(f"sqlite:///{tmp}/cost.db", args.repeats * 3)
        server, uri = start_server(tmp)
        try:
            results["server"] = tracking_cost(uri, args.repeats * 3)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
        from src.tracking.client import close_all

        close_all()

    launchers = results["launchers"]
    print("\nsummary")
    print(f"  basic launcher, median     {statistics.median(launchers['basic_s']):7.1f} s")
    print(f"  joblib, 2 workers, median  {statistics.median(launchers['joblib_s']):7.1f} s")
    print(f"  joblib / basic             {launchers['ratio_joblib_over_basic']:7.2f}   "
          f"(target <= 0.65)")
    for name in ("sqlite", "server"):
        print(f"  tracking cost per run, {name:6s} {results[name]['overhead_per_run_s']:7.3f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
