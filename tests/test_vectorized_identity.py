"""The batched training core: every member of a group computes exactly what its solo run does.

In-process: src.vectorized.loop.fit_group against src.trainer.fit, member by member, compared
with == (loss curves, final coefficients, diverged step), for every preset, a slice of the
model x optimizer grid, and a group in which members diverge at different steps.
"""

from __future__ import annotations

import pytest

from src.config import compose, preset_names, validate
from src.trainer import fit
from src.vectorized.loop import fit_group

SEEDS = (0, 1, 2, 3)
SHORTER = {"dynamic": ["steps=3000"]}  # the preset's 30000 steps, cut for test time


def group_and_solo(overrides, seeds=SEEDS):
    cfgs = [compose([*overrides, f"seed={seed}"]) for seed in seeds]
    for cfg in cfgs:
        validate(cfg)
    return fit_group(cfgs), [fit(cfg) for cfg in cfgs]


def assert_members_identical(group, solos):
    assert len(group.members) == len(solos)
    for member, solo in zip(group.members, solos):
        assert member.losses == solo.losses
        assert member.coefficients == solo.coefficients
        assert member.diverged_step == solo.diverged_step
        assert member.formula == solo.formula
        assert (member.y_fit == solo.y_fit).all()


def test_every_preset_is_covered():
    assert set(preset_names()) == {"autograd", "custom_function", "dynamic", "module", "nn",
                                   "numpy", "optim", "tensor"}


@pytest.mark.slow
@pytest.mark.parametrize("preset", preset_names())
def test_preset_members_equal_their_solo_runs(preset):
    group, solos = group_and_solo([f"experiment={preset}", *SHORTER.get(preset, [])])
    assert group.batched, group.reason
    assert len(solos[0].losses) == (3000 if preset == "dynamic" else 2000)
    if compose([f"experiment={preset}"]).model.init is None:  # drawn starts: the seeds differ
        assert len({tuple(s.losses) for s in solos}) == len(SEEDS)
    assert_members_identical(group, solos)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
@pytest.mark.parametrize("model", ["cubic", "legendre", "dynamic"])
def test_grid_members_equal_their_solo_runs(model, optimizer):
    group, solos = group_and_solo([f"model={model}", f"optimizer={optimizer}",
                                   "implementation=autograd", "steps=600"], seeds=(0, 1, 2))
    assert_members_identical(group, solos)
    # Adam counts each parameter's updates; the dynamic model skips `e` per member
    assert group.batched == (not (model == "dynamic" and optimizer == "adam"))
    if not group.batched:
        assert "Adam" in group.reason


@pytest.mark.slow
def test_members_diverge_alone_at_their_solo_step():
    seeds = range(12)
    group, solos = group_and_solo(["experiment=dynamic", "lr=3e-8", "steps=3000"], seeds)
    assert group.batched
    assert_members_identical(group, solos)
    diverged = {seed: m.diverged_step for seed, m in zip(seeds, group.members)}
    assert diverged[0] == 2575
    assert {seed for seed, step in diverged.items() if step is None} == {3, 11}
    assert len(group.members[3].losses) == 3000 and len(group.members[0].losses) == 2575


def test_each_member_streams_its_own_curve():
    seen = {}

    def on_losses(member, first_step, values, stamps):
        assert len(values) == len(stamps)
        seen.setdefault(member, []).extend(values)

    cfgs = [compose(["experiment=tensor", "steps=50", f"seed={s}"]) for s in (5, 6)]
    group = fit_group(cfgs, on_losses=on_losses)
    assert seen == {0: group.members[0].losses, 1: group.members[1].losses}
    assert group.members[0].wall_time_s == pytest.approx(group.wall_time_s / 2)


def test_a_group_sends_its_curves_in_pieces_while_it_trains(monkeypatch):
    """About SEND_ROWS values at a time (members x steps), so that its recorder writes them
    while the group trains; each member's pieces are consecutive and make its whole curve."""
    from src.vectorized import loop

    monkeypatch.setattr(loop, "SEND_ROWS", 4 * 50)
    pieces = {}

    def on_losses(member, first_step, values, stamps):
        pieces.setdefault(member, []).append((first_step, list(values)))

    cfgs = [compose(["experiment=autograd", "steps=120", f"seed={s}"]) for s in range(4)]
    group = fit_group(cfgs, on_losses=on_losses)
    for member, sent in pieces.items():
        assert [first for first, _ in sent] == [0, 50, 100]
        assert [v for _, values in sent for v in values] == group.members[member].losses


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["step", "exponential", "cosine"])
def test_scheduled_members_follow_their_solo_lr_sequence(scheduler):
    group, solos = group_and_solo([f"scheduler={scheduler}", "optimizer=momentum",
                                   "implementation=tensor", "steps=600"], seeds=(0, 1, 2))
    assert group.batched, group.reason
    assert_members_identical(group, solos)
    for member, solo in zip(group.members, solos):
        assert member.lrs == solo.lrs and len(set(solo.lrs)) > 1


def test_each_member_streams_its_own_lr_series():
    seen = {}

    def on_lrs(member, first_step, values, stamps):
        assert len(values) == len(stamps) and first_step == len(seen.get(member, []))
        seen.setdefault(member, []).extend(values)

    cfgs = [compose(["scheduler=exponential", "experiment=tensor", "steps=40", f"seed={s}"])
            for s in (5, 6)]
    group = fit_group(cfgs, on_lrs=on_lrs)
    assert seen == {0: group.members[0].lrs, 1: group.members[1].lrs}
    assert len(seen[0]) == 40


def test_a_family_without_a_batched_forward_runs_member_by_member(monkeypatch):
    """The quintic family of tests/extending (registered from outside src/): its group runs each
    member through src.trainer.fit, never approximated."""
    from conftest import REPO_ROOT

    extending = REPO_ROOT / "tests" / "extending"
    monkeypatch.syspath_prepend(str(extending))
    group, solos = group_and_solo([f"hydra.searchpath=[file://{extending / 'conf'}]",
                                   "model=quintic", "implementation=tensor", "optimizer=adam",
                                   "lr=0.01", "steps=100"], seeds=(0, 1))
    assert not group.batched and "quintic" in group.reason
    assert_members_identical(group, solos)


@pytest.mark.parametrize("optimizer", ["manual_sgd", "sgd", "momentum", "rmsprop", "adam",
                                       "adamw"])
def test_every_batched_optimizer_is_the_solo_component_and_bit_identical(optimizer):
    """The batched optimizer is the solo run's component (same class and settings) over the
    stacked parameters, for every optimizer in loop.BATCHED_OPTIMIZERS."""
    import torch

    from src.vectorized.loop import BATCHED_OPTIMIZERS
    from src.vectorized.solo import batched_optimizer, solo_start

    overrides = [f"optimizer={optimizer}", "implementation=module", "steps=200"]
    cfg = compose(overrides)
    template = solo_start(cfg, 0).optimizer
    batched = batched_optimizer(cfg, [torch.zeros(3, 1)])
    assert type(batched) is type(template) and batched.defaults == template.defaults
    assert type(batched) in BATCHED_OPTIMIZERS
    group, solos = group_and_solo(overrides, seeds=(0, 1))
    assert group.batched, group.reason
    assert_members_identical(group, solos)


def test_batched_optimizers_are_exactly_the_tested_ones():
    from src.optimizers import ManualSGD
    from src.vectorized.loop import BATCHED_OPTIMIZERS

    assert {c.__name__ for c in BATCHED_OPTIMIZERS} == {ManualSGD.__name__, "SGD", "RMSprop",
                                                         "Adam", "AdamW"}
