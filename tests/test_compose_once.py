"""Seed variants of a sweep job are derived from one composition, and are exactly what Hydra
composes; where they would not be, every job is composed by Hydra again (src/compose_once.py)."""

from __future__ import annotations

import logging

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict, read_write

from src import compose_once, config
from src.compose_once import ComposeOnceLoader


class CountingLoader:
    """Hydra's config loader, counting the compositions asked of it."""

    def __init__(self, loader):
        self.loader, self.calls = loader, 0

    def load_sweep_config(self, master_config, overrides):
        self.calls += 1
        return self.loader.load_sweep_config(master_config, overrides)


@pytest.fixture
def hydra_loader():
    """(master config, Hydra's own config loader) for `python -m src.train -m ...` here."""
    config.register()
    with initialize_config_dir(config_dir=str(config.CONF_DIR), version_base="1.3",
                               job_name="train"):
        master = compose(config.CONFIG_NAME, overrides=[], return_hydra_config=True)
        yield master, GlobalHydra.instance().config_loader()


def compose_sweep(master, loader, jobs) -> tuple[list, int]:
    """The jobs' configs as the validating sweeper gets them, and how many Hydra composed."""
    counting = CountingLoader(loader)
    once = ComposeOnceLoader(counting)
    return [once.load_sweep_config(master, job) for job in jobs], counting.calls


def sweep_jobs(seeds, *others):
    return [[*others[:1], f"seed={s}", *others[1:]] for s in seeds]


def as_dict(cfg):
    return OmegaConf.to_container(cfg, resolve=False)


@pytest.mark.parametrize("others", [
    ("experiment=autograd", "lr=1e-6"),
    ("model=legendre", "optimizer=adam", "hydra.job.config.override_dirname.exclude_keys=[seed]"),
    ("experiment=dynamic", "scheduler=step", "steps=300"),
])
def test_seed_variants_are_hydras_composition(hydra_loader, others):
    master, loader = hydra_loader
    jobs = sweep_jobs(range(6), *others)
    derived, composed_by_hydra = compose_sweep(master, loader, jobs)
    assert composed_by_hydra == 2  # the first job, and the second to check the derivation against
    for job, cfg in zip(jobs, derived):
        composed = loader.load_sweep_config(master, job)
        assert as_dict(cfg) == as_dict(composed), job
        assert OmegaConf.is_struct(cfg) == OmegaConf.is_struct(composed)
    assert [c.seed for c in derived] == list(range(6))
    assert derived[3].hydra.overrides.task[1] == "seed=3"


def test_other_differences_are_composed_by_hydra(hydra_loader):
    master, loader = hydra_loader
    jobs = [["lr=1e-6", "seed=1"], ["lr=2e-6", "seed=1"],
            ["seed=2", "lr=1e-6"],  # the same overrides in another order: Hydra's to compose
            ["seed=${steps}"], ["model=legendre"]]  # an interpolation: not a plain seed
    configs, composed_by_hydra = compose_sweep(master, loader, jobs)
    for job, cfg in zip(jobs, configs):
        assert as_dict(cfg) == as_dict(loader.load_sweep_config(master, job))
    assert composed_by_hydra == len(jobs)


def test_a_derivation_that_differs_turns_itself_off(hydra_loader, monkeypatch, caplog):
    """A Hydra that recorded the overrides somewhere else: caught, and every job composed."""
    master, loader = hydra_loader
    monkeypatch.setattr(compose_once, "overrides_dirname", lambda cfg: "not what hydra says")
    jobs = sweep_jobs(range(5), "experiment=autograd")
    with caplog.at_level(logging.WARNING, logger="src.compose_once"):
        configs, composed_by_hydra = compose_sweep(master, loader, jobs)
    assert composed_by_hydra == len(jobs)
    assert "composed one by one" in caplog.text
    for job, cfg in zip(jobs, configs):
        assert as_dict(cfg) == as_dict(loader.load_sweep_config(master, job))


def test_a_hydra_without_the_dirname_helper_composes_every_job(hydra_loader, monkeypatch, caplog):
    master, loader = hydra_loader

    def moved(cfg):
        raise ImportError("cannot import name 'get_overrides_dirname'")

    monkeypatch.setattr(compose_once, "overrides_dirname", moved)
    jobs = sweep_jobs(range(4), "experiment=numpy")
    with caplog.at_level(logging.WARNING, logger="src.compose_once"):
        configs, composed_by_hydra = compose_sweep(master, loader, jobs)
    assert composed_by_hydra == len(jobs)
    assert "get_overrides_dirname" in caplog.text
    assert [c.seed for c in configs] == [0, 1, 2, 3]


def test_a_vectorized_jobs_task_config_is_hydras_without_copying_the_hydra_node(hydra_loader):
    """src/vectorized/launch.py hands the task what Hydra's run_job would (a deep copy without
    the hydra node, typed as the schema), and leaves the job's own config whole."""
    import copy

    from src.compose_once import task_config

    master, loader = hydra_loader
    (job,), _ = compose_sweep(master, loader, [["experiment=autograd", "seed=3"]])
    before = as_dict(job)
    task = task_config(job)
    expected = copy.deepcopy(job)
    with read_write(expected), open_dict(expected):
        del expected["hydra"]
    assert as_dict(task) == as_dict(expected) and "hydra" not in task
    assert OmegaConf.get_type(task) is OmegaConf.get_type(expected)
    assert OmegaConf.is_struct(task) == OmegaConf.is_struct(expected)
    assert as_dict(job) == before and job.hydra.job.name == "train"
    with read_write(task):
        task.seed = 99  # a private copy: the job's config keeps its seed
    assert job.seed == 3


def test_a_verified_seed_variants_task_config_is_derived_alone(hydra_loader):
    """The validating sweeper checks a verified seed variant's seed only, and the vectorized
    launcher takes its task config from the family's, seed set: both equal what deriving (and
    composing) the whole job gives."""
    from src.compose_once import task_config

    master, loader = hydra_loader
    jobs = sweep_jobs(range(4), "experiment=autograd", "lr=1e-6")
    once = ComposeOnceLoader(loader)
    assert once.variant(jobs[0]) is None  # nothing composed yet
    first, second = (once.load_sweep_config(master, job) for job in jobs[:2])
    family, seed = once.variant(jobs[3])
    assert seed == 3 and family.verified
    task = once.variant_task_config(jobs[3])
    assert as_dict(task) == as_dict(task_config(once.load_sweep_config(master, jobs[3])))
    assert task.seed == 3 and first.seed == 0 and OmegaConf.get_type(task) is \
        OmegaConf.get_type(task_config(first))
    assert once.variant_task_config(["experiment=autograd", "lr=1e-6"]) is None  # no seed


def test_seed_variants_are_still_derived_after_the_first_job_ran(hydra_loader, caplog):
    """The basic launcher derives a verified family's later jobs when it runs them, after Hydra
    ran the first job (and marked that config's hydra node read-only): the family's template is
    its own copy, so derivation goes on (found in a benchmark: every later job was composed)."""
    master, loader = hydra_loader
    jobs = sweep_jobs(range(4), "experiment=autograd")
    counting = CountingLoader(loader)
    once = ComposeOnceLoader(counting)
    first, _ = (once.load_sweep_config(master, job) for job in jobs[:2])
    OmegaConf.set_readonly(first.hydra, True)  # what Hydra's run_job does to a job it runs
    with read_write(first), open_dict(first):
        first.seed = 99  # nor may a job's own config change its family
    calls = counting.calls
    with caplog.at_level(logging.WARNING):
        later = [once.load_sweep_config(master, job) for job in jobs[2:]]
    assert counting.calls == calls, caplog.text  # derived, not composed
    assert [c.seed for c in later] == [2, 3] and "one by one" not in caplog.text
