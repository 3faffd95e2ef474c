"""Entry point: `python -m src.train [overrides]` trains one variant; `-m` sweeps.

`train(cfg)` is the whole job, usable without Hydra; `hydra_main` is the thin Hydra wrapper;
`main()` turns bad input, interrupts and failures into one-line errors and exit codes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
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
    register,
    validate,
)
from src.preflight import describe, validate_every_job
from src.tracking import sweep
from src.tracking.client import TrackingError, close_all, prestart, recorder_for
from src.tracking.provenance import git_tags
from src.tracking.store import redact

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
    recorder = recorder_for(cfg.tracking.uri, cfg.tracking.experiment)
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
    from src.trainer import fit  # torch: imported once a run needs it (see main)

    validate(cfg)
    run = open_run(cfg, extra_tags, overrides)
    try:
        result = fit(cfg, on_losses=run.log_losses)
    except BaseException as exc:
        end_unfinished(run, exc)
        raise
    record_result(cfg, run, result)
    return result


def open_run(cfg: DictConfig, extra_tags: dict | None = None, overrides: list | None = None):
    """Start the run of one validated config: tags, params, config and overrides artifacts."""
    variant = composed_variant(cfg)
    recorder = recorder_for(cfg.tracking.uri, cfg.tracking.experiment)
    parent = sweep.parent_for(recorder)
    run = recorder.start_run(
        run_name=f"{variant}-lr{cfg.lr:g}-seed{cfg.seed}",
        tags={"variant": variant, "model": cfg.model.name,
              "implementation": cfg.implementation.name, "optimizer": cfg.optimizer.name,
              "mlflow.source.name": "src.train", "config_hash": config_hash(cfg), **git_tags(),
              **(extra_tags or {})},
        params=config_params(cfg),
        parent=parent,
    )
    run.log_text("config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    overrides = task_overrides() if overrides is None else overrides
    run.log_text("overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))
    return run


def end_unfinished(run, exc: BaseException) -> None:
    """A run whose training did not return: KILLED on Ctrl-C / SIGTERM, else FAILED."""
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or SIGTERM (Terminated)
        run.set_tags({"interrupted": type(exc).__name__})
        run.end("KILLED")
    else:
        run.end("FAILED")


def record_result(cfg: DictConfig, run, result: FitResult, extra_metrics: dict | None = None,
                  figures: bool = True) -> None:
    """Log a finished fit's summary metrics, tags and figures, and end its run."""
    last_step = len(result.losses) - 1
    now_ms = time.time_ns() // 1_000_000
    diverged = result.diverged_step is not None
    best = optimum.optimum_loss(cfg.model.name)
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
        variant = composed_variant(cfg)
        run.log_figures(result.x, result.y, result.y_fit, result.formula,
                        f"{variant} (lr={cfg.lr:g}, seed={cfg.seed})")
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
    if flat.get("tracking.uri"):
        flat["tracking.uri"] = redact(flat["tracking.uri"])
    return flat


def task_overrides() -> list:
    from hydra.core.hydra_config import HydraConfig

    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # called outside a Hydra app (tests, notebooks)
        return []



@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=CONFIG_NAME)
def hydra_main(cfg: DictConfig) -> float:
    try:
        return train(cfg)
    except (ConfigError, TrackingError) as exc:  # one line, and the sweep stops here
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None


def _raise_terminated(signum, frame):
    raise Terminated()


def main() -> None:
    prestart()  # the recorder imports MLflow while we start up (torch comes with the first run)
    register()
    validate_every_job()
    # Let errors reach us instead of Hydra's several-line report: bad input becomes one line.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    signal.signal(signal.SIGTERM, _raise_terminated)
    code = 0
    try:
        hydra_main()
    except ConfigError as exc:  # a bad job of a sweep, refused before the first job ran
        print(f"error: {exc}", file=sys.stderr)
        code = 2
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
        sweep.finish({0: "FINISHED", 130: "KILLED", 143: "KILLED"}.get(code, "FAILED"))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the recorder drain undisturbed
        for error in close_all():
            print(f"error: {error}", file=sys.stderr)
            code = code or 1
    sys.exit(code)


if __name__ == "__main__":
    main()
