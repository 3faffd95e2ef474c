"""Entry point: `python -m src.train [overrides]` trains one variant; `-m` sweeps.

`train(cfg)` is the whole job, usable without Hydra; `hydra_main` is the thin Hydra wrapper;
`main()` turns bad input, interrupts and failures into one-line errors and exit codes.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from src import optimum
from src.config import (
    CONF_DIR,
    CONFIG_NAME,
    ConfigError,
    composed_variant,
    config_hash,
    implementation_name,
    model_name,
    register,
    seed_group_hash,
    validate,
    validate_components,
    validate_settings,
)
from src.preflight import describe
from src.tracking import sweep
from src.tracking.client import (
    RecorderLost,
    Run,
    TrackingError,
    close_all,
    prestart,
    recorder_for,
)
from src.tracking.provenance import git_tags
from src.tracking.uri_secrets import RedactingStream, redact_values

if TYPE_CHECKING:
    from src.trainer import FitResult

log = logging.getLogger("src.train")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as a KeyboardInterrupt so that a run is closed as KILLED.

    A subclass rather than a sibling: libraries on the way (tqdm's logging handler, for one)
    re-raise KeyboardInterrupt but swallow other BaseExceptions.
    """


def train(cfg: DictConfig) -> float:
    """One job: returns its final loss (inf if it diverged), for any Hydra sweeper to minimise."""
    if cfg.resume:
        validate(cfg)
        done = skip_if_finished(cfg)
        if done is not None:
            return done
    return train_tracked(cfg).final_loss


def skip_if_finished(cfg: DictConfig) -> float | None:
    """resume=true: the final loss of a FINISHED run with this config, recorded as skipped."""
    recorder = recorder_for(cfg.tracking.uri, cfg.tracking.experiment, output_dir())
    identity = config_hash(cfg)
    found = recorder.find_finished(identity)
    if found is None:
        return None
    run_id, final_loss = found
    log.info("resume: skipped, this config already FINISHED as run %s (final loss %s)",
             run_id, final_loss)
    parent = sweep.parent_for(recorder)
    if parent is not None:
        recorder.record_skip(parent, identity, OmegaConf.to_yaml(OmegaConf.create(
            {"overrides": task_overrides(), "finished_run": run_id, "final_loss": final_loss})))
    return final_loss


def train_tracked(cfg: DictConfig, extra_tags: dict | None = None,
                  overrides: list | None = None) -> FitResult:
    """Validate, train and track one run."""
    validate_settings(cfg)
    # The recorder checks and opens the store while the components are built the first time
    # (one line if the store cannot be used); no run exists before both checks passed.
    recorder = recorder_for(cfg.tracking.uri, cfg.tracking.experiment, output_dir())
    validate_components(cfg)
    from src.trainer import fit  # torch: imported once a run needs it (see main)

    run = open_run(recorder, cfg, extra_tags, overrides)
    with training(recorder, [run]):
        result = fit(cfg, on_losses=run.log_losses, on_lrs=functools.partial(run.log_series, "lr"))
    record_result(cfg, run, result)
    return result


def open_run(recorder, cfg: DictConfig, extra_tags: dict | None = None,
             overrides: list | None = None) -> Run:
    """Start the run of one validated config: tags, params, config and overrides artifacts
    (secrets in URIs masked), as a child of the sweep it belongs to."""
    variant = composed_variant(cfg)
    parent = sweep.parent_for(recorder)
    run = recorder.start_run(
        run_name=f"{variant}-lr{cfg.lr:g}-seed{cfg.seed}",
        tags=redact_values({
            "variant": variant, "model": model_name(cfg),
            "implementation": implementation_name(cfg), "optimizer": cfg.optimizer.name,
            "scheduler": cfg.scheduler.name if cfg.get("scheduler") else "none",
            "mlflow.source.name": "src.train", "config_hash": config_hash(cfg),
            "seed_group": seed_group_hash(cfg), **git_tags(), **(extra_tags or {})}),
        params=config_params(cfg),
        parent=parent,
    )
    run.log_text("config.yaml", OmegaConf.to_yaml(
        redact_values(OmegaConf.to_container(cfg, resolve=True))))
    overrides = task_overrides() if overrides is None else overrides
    run.log_text("overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))
    return run


@contextlib.contextmanager
def training(recorder, runs: list):
    """The training of open runs (one, or a vectorized group's members): none is left RUNNING.

    The recorder dying (or the store failing under any of them) stops the training at once and
    every run is closed FAILED, in one TrackingError line; Ctrl-C / SIGTERM closes them KILLED;
    anything else FAILED.
    """
    try:
        with recorder.training(*runs):
            yield
    except RecorderLost as lost:  # the recorder died, or the store failed under a run
        for run in runs[1:]:
            run.end("FAILED")
        error = recorder.close_lost(runs[0], str(lost))
        if len(runs) > 1:
            error = TrackingError(f"{error} (and the other {len(runs) - 1} runs of its "
                                  "vectorized group closed FAILED)")
        raise error from None
    except BaseException as exc:
        for run in runs:
            end_unfinished(run, exc)
        raise


def end_unfinished(run: Run, exc: BaseException) -> None:
    """A run whose training did not return: KILLED on Ctrl-C / SIGTERM, else FAILED."""
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or SIGTERM (Terminated)
        run.set_tags({"interrupted": type(exc).__name__})
        run.end("KILLED")
    else:
        run.end("FAILED")


def record_result(cfg: DictConfig, run: Run, result: FitResult,
                  extra_metrics: dict | None = None, figures: bool = True) -> None:
    """Log a finished fit's summary metrics, tags and (unless figures=False) its two figures,
    and end its run."""
    last_step = len(result.losses) - 1
    now_ms = time.time_ns() // 1_000_000
    diverged = result.diverged_step is not None
    best = optimum.optimum_loss(model_name(cfg))
    reached = optimum.steps_to_within(result.losses, best, tolerance=0.01)
    run.log_metrics({"final_loss": None if diverged else result.final_loss,
                     "optimum_loss": best,
                     "gap": None if diverged else optimum.gap(result.final_loss, best),
                     "steps_to_1pct": reached,
                     "wall_time_s": result.wall_time_s,
                     **{f"coef/{k}": v for k, v in result.coefficients.items()},
                     **(extra_metrics or {})},
                    step=max(last_step, 0), timestamp_ms=now_ms)
    run.set_tags({"formula": result.formula, "device": result.device,
                  "diverged": str(diverged).lower(),
                  **({"diverged_step": result.diverged_step} if diverged else {})})
    if figures:
        run.log_figures(result.x, result.y, result.y_fit, result.formula,
                        f"{composed_variant(cfg)} (lr={cfg.lr:g}, seed={cfg.seed})")
    run.end("FAILED" if diverged else "FINISHED")


def config_params(cfg: DictConfig) -> dict:
    """Every leaf of the resolved config under its dotted path (e.g. optimizer.lr)."""
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, path + ".")
            else:
                flat[path] = value

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return redact_values(flat)


def task_overrides() -> list:
    """This job's overrides as they may be written anywhere: secrets in URIs masked."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return redact_values(list(HydraConfig.get().overrides.task))
    except ValueError:  # called outside a Hydra app (tests, notebooks)
        return []


def output_dir() -> str | None:
    """The job's Hydra output folder (where MLflow's own output is logged), if in a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get().runtime.output_dir
    except ValueError:
        return None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=CONFIG_NAME)
def hydra_main(cfg: DictConfig) -> float:
    if threading.current_thread() is threading.main_thread():  # also in launchers' job processes
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return train(cfg)
    except (ConfigError, TrackingError) as exc:  # one line, and the sweep stops here
        code = 2 if isinstance(exc, ConfigError) else 1
        if sweep.in_job_process():  # the launching process prints it, once
            raise sweep.JobFailed(str(exc), code) from None
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(code) from None
    except Terminated:  # e.g. scancel: the run is KILLED
        if not sweep.in_job_process():
            raise
        raise sweep.JobFailed(f"job {composed_variant(cfg)} seed={cfg.seed} was terminated "
                              f"(SIGTERM); its run is KILLED", 1) from None


def _raise_terminated(signum, frame):
    raise Terminated()


def register_plugins() -> None:
    """Our Hydra plugins (the validating sweeper, the vectorized launcher), registered by hand.

    Hydra finds plugins by scanning the hydra_plugins package, which misses ours in an editable
    install (a path hook, not a folder); registering them with Hydra's public API works for every
    kind of install and from any working directory. Importing the launcher's module also stores
    its config node, `hydra/launcher=vectorized`.
    """
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # scans (and re-imports) Hydra's own plugins: before ours
    from hydra_plugins.harness_sweeper import ValidatingSweeper
    from hydra_plugins.harness_vectorized_launcher.vectorized_launcher import VectorizedLauncher

    plugins.register(ValidatingSweeper)
    plugins.register(VectorizedLauncher)


def main() -> None:
    sys.stderr = RedactingStream(sys.stderr)  # no password of a tracking URI in any error line
    prestart()  # the recorder imports MLflow while we start up (torch comes with the first run)
    register()
    register_plugins()
    # Let errors reach us instead of Hydra's several-line report: bad input becomes one line.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    signal.signal(signal.SIGTERM, _raise_terminated)
    code = 0
    try:
        hydra_main()
    except ConfigError as exc:  # a bad job of a sweep, refused before the first job ran
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except (TrackingError, sweep.LaunchError) as exc:  # the store, the launcher: one line
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except sweep.JobFailed as exc:  # a job in a launcher's process, said once, here
        print(f"error: {exc}", file=sys.stderr)
        code = exc.code
    except (HydraException, OmegaConfBaseException) as exc:  # composition: unknown key, type...
        print(f"error: {describe(exc)}", file=sys.stderr)
        code = 2
    except Terminated:
        log.warning("terminated (SIGTERM): the run so far is saved and marked KILLED")
        code = 143
    except KeyboardInterrupt:
        log.warning("interrupted (SIGINT): the run so far is saved and marked KILLED")
        code = 130
    except SystemExit as exc:  # Hydra's way out after a failed job
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        if sys.exc_info()[0] is not None and code == 0:  # anything else: a bug, with traceback
            code = 1
        sweep.finish({0: "FINISHED", 130: "KILLED", 143: "KILLED"}.get(code, "FAILED"))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the recorder drain undisturbed
        for error in close_all():
            print(f"error: {error}", file=sys.stderr)
            code = code or 1
    # Everything is written. The interpreter's last garbage collections would walk every object
    # torch, Hydra and the jobs' configs made (measured: 0.7 s of a 7 s seed study); what is
    # left ends with the process either way.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    main()
