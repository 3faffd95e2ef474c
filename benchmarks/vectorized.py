"""Seed studies: hydra/launcher=vectorized against the basic (and joblib) launcher.

Run from anywhere:  python benchmarks/vectorized.py [--seeds 64] [--dynamic-steps 3000]
                    [--repeats 3] [--sizes 1,4,16,64,256] [--out benchmarks/results]
                    [--compare-only]

Every measurement is a whole command (`python -m src.train -m ...`, start-up included) on a
fresh SQLite store, with its peak memory (the largest process of the command: the training
process or its recorder). Reported:
1. a seed study (`experiment=autograd 'seed=range(64)'`), vectorized / basic (the ratio of
   the medians of --repeats alternating runs); target <= 0.25, goal <= 0.15; the same for the
   module and dynamic presets (dynamic with --dynamic-steps);
2. seconds per member against group size (vectorized, autograd), as a PNG;
3. joblib (2 workers) / basic for 16 x autograd;
4. `python -m src.compare` on a 256-member vectorized autograd sweep (whole command, 3 times;
   target <= 10 s; --compare-only: this alone).
On a shared machine absolute times wander; compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
VECTORIZED = ["hydra/launcher=vectorized"]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]

# Runs one command and reports its peak RSS: RUSAGE_CHILDREN of a fresh wrapper process covers
# only that command's processes (the training process and its recorder).
PEAK_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def store_env(store: Path) -> dict:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
            "PYTHONPATH": str(REPO_ROOT)}


def sweep(launcher: list, args: list, tmp: Path, store: Path = None) -> dict:
    store = store or Path(tempfile.mkdtemp(dir=tmp))
    env = store_env(store)
    command = [PYTHON, "-c", PEAK_WRAPPER, PYTHON, "-m", "src.train", "-m", *launcher, *args,
               f"hydra.sweep.dir={store}/hydra"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=store, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(launcher + args)}\n{done.stderr[-3000:]}")
    peak_mb = int(done.stdout.strip().splitlines()[-1]) / 1024
    print(f"  {' '.join(launcher) or 'basic':28s} {' '.join(args):50s} {elapsed:7.1f} s "
          f"{peak_mb:7.0f} MB", flush=True)
    return {"seconds": elapsed, "peak_mb": peak_mb}


def compare_report(tmp: Path, members: int = 256, repeats: int = 3) -> dict:
    """Seconds of the whole `python -m src.compare` (start-up included) on a sweep of `members`
    seeds, as a user runs it (the report also logged to the sweep's parent run)."""
    store = Path(tempfile.mkdtemp(dir=tmp))
    sweep(VECTORIZED, ["experiment=autograd", f"seed=range({members})"], tmp, store)
    seconds = []
    for n in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([PYTHON, "-m", "src.compare", "--out", str(store / f"report-{n}")],
                              env=store_env(store), cwd=store, capture_output=True, text=True)
        seconds.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.exit(f"failed: python -m src.compare\n{done.stderr[-3000:]}")
    print(f"  python -m src.compare, {members} runs: {', '.join(f'{s:.1f}' for s in seconds)} s",
          flush=True)
    return {"members": members, "seconds": seconds, "best": min(seconds)}


def study(preset: str, seeds: int, extra: list, tmp: Path, repeats: int) -> dict:
    """Vectorized and basic, alternating `repeats` times; the ratio of the medians."""
    args = [f"experiment={preset}", f"seed=range({seeds})", *extra]
    runs = {"vectorized": [], "basic": []}
    for _ in range(repeats):
        runs["vectorized"].append(sweep(VECTORIZED, args, tmp))
        runs["basic"].append(sweep([], args, tmp))
    median = {name: statistics.median(r["seconds"] for r in done) for name, done in runs.items()}
    return {**runs, "median_s": median, "ratio": median["vectorized"] / median["basic"],
            "pairs": [v["seconds"] / b["seconds"]
                      for v, b in zip(runs["vectorized"], runs["basic"])]}


def per_member_curve(sizes: list, tmp: Path, out: Path) -> dict:
    from matplotlib.figure import Figure

    points = {n: sweep(VECTORIZED, ["experiment=autograd", f"seed=range({n})"], tmp)
              for n in sizes}
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    ax.loglog(sizes, [points[n]["seconds"] / n for n in sizes], "o-")
    ax.set_xlabel("group size (seeds in one vectorized command)")
    ax.set_ylabel("seconds per member (whole command)")
    ax.set_title("experiment=autograd, hydra/launcher=vectorized")
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(out / "seconds_per_member.png")
    return {str(n): p for n, p in points.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--dynamic-steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating repetitions of each seed study (ratio of medians)")
    parser.add_argument("--sizes", default="1,4,16,64,256")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--compare-only", action="store_true",
                        help="only 4.: src.compare on a 256-member sweep (results not written)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.compare_only:
            print("4. python -m src.compare on a 256-member sweep")
            compare_report(tmp)
            return
        print(f"1. {args.seeds}-seed studies, basic vs vectorized")
        results["studies"] = {
            "autograd": study("autograd", args.seeds, [], tmp, args.repeats),
            "module": study("module", args.seeds, [], tmp, args.repeats),
            "dynamic": study("dynamic", args.seeds, [f"steps={args.dynamic_steps}"], tmp,
                             args.repeats),
        }
        print("2. seconds per member against group size")
        sizes = [int(s) for s in args.sizes.split(",")]
        results["per_member"] = per_member_curve(sizes, tmp, args.out)
        print("3. 16 x autograd, joblib(2) vs basic")
        jobs = ["experiment=autograd", "seed=range(16)"]
        basic, joblib = sweep([], jobs, tmp), sweep(JOBLIB, jobs, tmp)
        results["joblib"] = {"basic": basic, "joblib": joblib,
                             "ratio": joblib["seconds"] / basic["seconds"]}
        print("4. python -m src.compare on a 256-member sweep")
        results["compare"] = compare_report(tmp)
    for name, s in results["studies"].items():
        print(f"{name}: vectorized / basic = {s['ratio']:.3f} (medians "
              f"{s['median_s']['vectorized']:.1f} s / {s['median_s']['basic']:.1f} s; pairs "
              f"{', '.join(f'{r:.3f}' for r in s['pairs'])})")
    print(f"joblib / basic (16 x autograd) = {results['joblib']['ratio']:.2f}")
    print(f"python -m src.compare, 256 runs: best of 3 {results['compare']['best']:.1f} s "
          "(target <= 10 s)")
    (args.out / "vectorized.json").write_text(json.dumps(results, indent=2))
    print(f"written: {args.out}/vectorized.json, {args.out}/seconds_per_member.png")


if __name__ == "__main__":
    main()
