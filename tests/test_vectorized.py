"""Vectorised groups (issue 11): M same-shape models trained as one stacked computation must give
each member the run the plain Trainer gives it alone — same data, noise, Adam state, early stop,
checkpoints — and must keep members apart."""

from __future__ import annotations

import dataclasses
import shutil
import warnings

import pytest
import torch

import torchmim as tm
from torchmim.data.toy import GMM2DConfig
from torchmim.io import read_checkpoint
from torchmim.layers import fast_paths
from torchmim.seeding import derive_seed, seed_everything
from torchmim.training import Trainer, TrainerConfig, VectorizedTrainer, group_key, run_group

DATA = GMM2DConfig(n_train=600, n_val=300, n_test=300)


def member(seed: int, hidden: int = 8, z_dim: int = 2):
    """A run's data and initial model, seeded as ``run()`` seeds them."""
    seed_everything(derive_seed(seed, "data"))
    data = DATA.load(seed=seed)
    seed_everything(derive_seed(seed, "init"))
    return data, tm.MLPModelConfig(hidden=hidden, z_dim=z_dim).build()


def alone(seed: int, objective, cfg: TrainerConfig, hidden: int = 8, z_dim: int = 2,
          out_dir=None, exact: bool = True) -> Trainer:
    """The plain run; ``exact``: with the fast paths off (torch.tanh, autograd's linear
    backward, torch's Normal.log_prob for the validation loss), the arithmetic a group with
    ``fast=False`` reproduces bit for bit."""
    data, model = member(seed, hidden, z_dim)
    trainer = Trainer(model, objective, dataclasses.replace(cfg, seed=seed), out_dir=out_dir)
    with fast_paths(**{k: not exact for k in EXACT}):
        trainer.fit(data.train, data.val[0])
    return trainer


#: The switches whose fast paths change float rounding in training or its validation loss.
EXACT = ("folded_tanh", "inference_blocks", "affine_backward", "inplace_log_prob", "native_kernels")


def count_affine(monkeypatch) -> list[int]:
    """A list that grows by one on every call of networks._Affine (the hand-written backward)."""
    from torchmim.networks import _Affine

    calls: list[int] = []
    apply = _Affine.apply
    monkeypatch.setattr(_Affine, "apply", lambda *a: calls.append(1) or apply(*a))
    return calls


def group(seeds, objectives, cfg: TrainerConfig, hidden: int = 8, *, out_dirs=None,
          resume=False, fast=False, datas=None, z_dims=None) -> VectorizedTrainer:
    built = [member(s, hidden, z) for s, z in zip(seeds, z_dims or [2] * len(seeds))]
    datas = datas or [b[0] for b in built]
    vt = VectorizedTrainer([b[1] for b in built], objectives, cfg, seeds=seeds, out_dirs=out_dirs,
                           fast=fast)
    vt.fit([d.train for d in datas], [d.val[0] for d in datas], resume=resume)
    return vt


def max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def strip(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


CFG = TrainerConfig(epochs=5, warmup_epochs=3, progress=False, min_steps=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_group_of_one_is_the_plain_trainer_bit_for_bit(dtype, request):
    if dtype == "float64":
        request.getfixturevalue("float64")
    single = alone(3, tm.MIM(), CFG)
    vt = group([3], tm.MIM(), CFG)
    # same data order, noise streams, Adam and warm-ups: the same floats, epoch after epoch
    assert max_diff(single.model, vt.member_model(0)) == 0.0
    assert strip(vt.members[0].history) == strip(single.history)
    assert vt.members[0].best_epoch == single.best_epoch


@pytest.mark.parametrize("name", ["amim", "ce", "vae_plus_h", "mim_minus_h"])
def test_every_supported_objective_matches_the_plain_trainer(name, float64):
    objective = tm.get_objective(name)
    single = alone(6, objective, CFG)
    vt = group([6], objective, CFG)
    assert max_diff(single.model, vt.member_model(0)) < 1e-12
    assert [h["val_loss"] for h in vt.members[0].history] == pytest.approx(
        [h["val_loss"] for h in single.history], rel=1e-12)
    assert list(vt.members[0].history[-1]) == list(single.history[-1])  # the same logged terms


def test_vae_and_fast_paths_agree_to_rounding(float64, monkeypatch):
    # the VAE's loss differs from the single trainer's in the last bit (summation order)
    single = alone(1, tm.VAE(), CFG)
    assert max_diff(single.model, group([1], tm.VAE(), CFG).member_model(0)) < 1e-12
    # the fast paths (tanh folded into sigmoid units, networks.affine's backward, width 60 so
    # that the 2 → 60 and 60 → 4 maps take it): the same function and gradients in another order
    # of operations; five epochs of MIM stay within 1e-9 in float64 (a wrong fold or gradient
    # is off by far more after the first step)
    calls = count_affine(monkeypatch)
    single = alone(2, tm.MIM(), CFG, hidden=60)
    fast = group([2, 3], [tm.MIM(), tm.VAE()], CFG, hidden=60, fast=True)
    assert fast._fold and fast._affine and calls
    assert max_diff(single.model, fast.member_model(0)) < 1e-9
    assert max_diff(alone(3, tm.VAE(), CFG, hidden=60).model, fast.member_model(1)) < 1e-9
    # the plain trainer with its own fast paths (width 256: the fold and the 2 → 256 map)
    calls.clear()
    exact_alone = alone(2, tm.MIM(), CFG, hidden=256)
    assert not calls  # the exact run takes none of the fast paths
    fast_alone = alone(2, tm.MIM(), CFG, hidden=256, exact=False)
    assert calls
    assert max_diff(exact_alone.model, fast_alone.model) < 1e-9


def test_the_group_follows_the_global_switches():
    """fast=None (what run_group uses) reads FAST_PATHS when the trainer is built, so
    fast_paths(folded_tanh=False, affine_backward=False) around run_group (or around a sweep,
    whose local workers inherit the switches: tests/test_threads.py) turns the group's fast
    paths off."""
    models = [tm.MLPModelConfig(hidden=8).build()]
    assert VectorizedTrainer(models, tm.MIM(), CFG, seeds=[0])._fold
    with fast_paths(folded_tanh=False, affine_backward=False):
        vt = VectorizedTrainer(models, tm.MIM(), CFG, seeds=[0])
        assert not vt._fold and not vt._affine
    swish = [tm.MLPModelConfig(hidden=8, activation="swish").build()]
    assert not VectorizedTrainer(swish, tm.MIM(), CFG, seeds=[0])._fold


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_folded_network_has_the_tanh_networks_values_and_gradients(float64, depth):
    """The fast path's tanh network (sigmoid units, the factors folded into the weights, the
    weights' gradients through the fold) against the plain stacked tanh network."""
    torch.manual_seed(0)
    models = [tm.MLPModelConfig(hidden=7, depth=depth).build() for _ in range(3)]
    plain = VectorizedTrainer(models, tm.MIM(), CFG, seeds=[0, 1, 2], fast=False)
    fast = VectorizedTrainer(models, tm.MIM(), CFG, seeds=[0, 1, 2])
    params = {n: (t * 3).requires_grad_() for n, t in plain.params.items()}  # saturating units
    x = torch.randn(3, 11, 2)
    weights = torch.randn(3, 11, 4)
    values, grads = [], []
    for trainer in (plain, fast):
        y = trainer._mlp(params, "decoder", x)
        values.append(y.detach())
        grads.append(torch.autograd.grad((y * weights).sum(), list(params.values()),
                                         allow_unused=True))
    torch.testing.assert_close(values[1], values[0], rtol=1e-12, atol=1e-12)
    checked = 0
    for g_fast, g_plain in zip(*reversed(grads)):
        if g_plain is not None:
            torch.testing.assert_close(g_fast, g_plain, rtol=1e-10, atol=1e-12)
            checked += 1
    assert checked == 2 * (depth + 1)  # every decoder weight and bias


@pytest.mark.parametrize(("m", "n_in", "n_out"), [(3, 2, 9), (3, 9, 4), (2, 5, 5)])
def test_stacked_affine_backward_is_the_exact_gradient(float64, m, n_in, n_out):
    """The stacked form of networks.affine's hand-written backward (laid out by which side is
    narrow) against finite differences (gradcheck), for a narrow input, a narrow output and a
    square map, with and without a gradient wanted for the input."""
    from torchmim.networks import _Affine as _StackedAffine

    torch.manual_seed(0)
    x = torch.randn(m, 6, n_in, requires_grad=True)
    w = torch.randn(m, n_out, n_in, requires_grad=True)
    b = torch.randn(m, n_out, requires_grad=True)
    assert torch.autograd.gradcheck(_StackedAffine.apply, (x, w, b))
    y = _StackedAffine.apply(x.detach(), w, b)  # the data layer: no gradient for x
    gw, gb = torch.autograd.grad(y.pow(2).sum(), (w, b))
    ref = torch.baddbmm(b.unsqueeze(1), x.detach(), w.transpose(1, 2))
    rw, rb = torch.autograd.grad(ref.pow(2).sum(), (w, b))
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    torch.testing.assert_close((gw, gb), (rw, rb), rtol=1e-12, atol=1e-12)


def test_fast_paths_with_another_activation(float64, monkeypatch):
    """fast=True with swish: no fold (not tanh), the affine backward only (width 60: the 2 → 60
    and 60 → 4 maps take it); members still end where their plain runs end, to rounding."""
    cfg = dataclasses.replace(CFG, epochs=3)
    built = [member(s, 60) for s in (4, 5)]
    swish = [tm.MLPModelConfig(hidden=60, activation="swish").build() for _ in built]
    for target, (_, model) in zip(swish, built):
        target.load_state_dict(model.state_dict())
    calls = count_affine(monkeypatch)
    runs = []
    for fast in (False, True):
        vt = VectorizedTrainer(swish, [tm.MIM(), tm.VAE()], cfg, seeds=[4, 5], fast=fast)
        assert not vt._fold and vt._affine == fast
        vt.fit([b[0].train for b in built], [b[0].val[0] for b in built])
        assert bool(calls) == fast
        runs.append(vt)
    for i in range(2):  # `calls` shows the affine backward ran; its GEMMs may round alike
        assert max_diff(runs[0].member_model(i), runs[1].member_model(i)) < 1e-9


def test_members_match_one_by_one_runs_and_stop_at_their_own_epochs(float64):
    cfg = dataclasses.replace(CFG, epochs=25, patience=0)
    seeds = [0, 1, 2, 3, 4, 5]
    objectives = [tm.MIM(), tm.VAE(), tm.AMIM(), tm.get_objective("ce"),
                  tm.get_objective("mim_minus_h"), tm.get_objective("vae_plus_h")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # early stops after few steps, on purpose
        singles = [alone(s, o, cfg) for s, o in zip(seeds, objectives)]
        vt = group(seeds, objectives, cfg)
    stops = []
    for i, single in enumerate(singles):
        s = vt.members[i]
        assert (s.epoch, s.best_epoch, s.stopped_early) == (single.epoch, single.best_epoch,
                                                            single.stopped_early)
        assert max_diff(single.model, vt.member_model(i)) < 1e-9
        assert [h["val_loss"] for h in s.history] == pytest.approx(
            [h["val_loss"] for h in single.history], rel=1e-9)
        stops.append(s.epoch)
    assert len(set(stops)) > 1 and max(stops) < cfg.epochs  # each member stopped on its own


def test_gradients_do_not_leak_between_members():
    seeds = [0, 1, 2]
    datas = [member(s)[0] for s in seeds]
    clean = group(seeds, [tm.MIM(), tm.VAE(), tm.MIM()], CFG, datas=datas)
    perturbed = [member(s)[0] for s in seeds]
    x, y = perturbed[0].val
    perturbed[0].val = (x * 3 + 1, y)              # member 0 sees other validation data ...
    perturbed[0].train.mixture.means = perturbed[0].train.mixture.means * 2  # ... and training data
    dirty = group(seeds, [tm.MIM(), tm.VAE(), tm.MIM()], CFG, datas=perturbed)
    assert max_diff(clean.member_model(0), dirty.member_model(0)) > 1e-3
    for i in (1, 2):  # the other members are untouched, to the last bit
        assert max_diff(clean.member_model(i), dirty.member_model(i)) == 0.0
        assert strip(clean.members[i].history) == strip(dirty.members[i].history)


class Interrupted(Exception):
    pass


def test_an_interrupted_group_resumes_to_the_uninterrupted_result(tmp_path):
    cfg = dataclasses.replace(CFG, epochs=6)
    seeds, objectives = [0, 1, 2], [tm.MIM(), tm.VAE(), tm.MIM()]
    straight = group(seeds, objectives, cfg)
    dirs = [tmp_path / f"m{i}" for i in range(3)]
    saved = tmp_path / "m1-epoch2.pt"

    class Stop(VectorizedTrainer):  # dies after epoch 3; keeps member 1's epoch-2 checkpoint
        def _run_epoch(self, epoch, idx, train, vals):
            super()._run_epoch(epoch, idx, train, vals)
            if epoch == 2:
                shutil.copy(dirs[1] / "checkpoint.pt", saved)
            if epoch == 3:
                raise Interrupted

    built = [member(s) for s in seeds]
    with pytest.raises(Interrupted):
        Stop([b[1] for b in built], objectives, cfg, seeds=seeds, out_dirs=dirs,
             fast=False).fit([b[0].train for b in built], [b[0].val[0] for b in built])
    # as if the group died while writing its epoch-3 checkpoints: member 1 is one epoch behind
    shutil.copy(saved, dirs[1] / "checkpoint.pt")
    assert [read_checkpoint(d / "checkpoint.pt")["epoch"] for d in dirs] == [3, 2, 3]
    resumed = group(seeds, objectives, cfg, out_dirs=dirs, resume=True)
    for i in range(3):
        assert max_diff(straight.member_model(i), resumed.member_model(i)) == 0.0
        assert strip(straight.members[i].history) == strip(resumed.members[i].history)
        csv_rows = (dirs[i] / "history.csv").read_text().strip().splitlines()
        assert len(csv_rows) == 1 + cfg.epochs  # rewritten from the checkpoint: no duplicates


def test_a_member_checkpoint_is_a_plain_trainer_checkpoint(tmp_path):
    cfg = dataclasses.replace(CFG, epochs=3)
    vt = group([4, 5], [tm.VAE(), tm.MIM()], cfg, out_dirs=[None, tmp_path])
    data, model = member(5)
    trainer = Trainer(model, tm.MIM(), dataclasses.replace(cfg, seed=5, epochs=5),
                      out_dir=tmp_path)
    with fast_paths(**dict.fromkeys(EXACT, False)):  # the group's exact arithmetic
        trainer.fit(data.train, data.val[0], resume=True)  # continues the member's run
    single = alone(5, tm.MIM(), dataclasses.replace(cfg, epochs=5))
    assert trainer.epoch == 5 and max_diff(single.model, trainer.model) == 0.0
    assert vt.members[1].epoch == 3


def test_run_group_writes_what_run_writes_and_ranks_mim_above_vae(tmp_path):
    base = {"model": {"name": "mlp", "hidden": 20}, "data": {"name": "gmm2d", "n_train": 2000,
            "n_val": 500, "n_test": 500}, "train": {"epochs": 30, "progress": False},
            "eval": {"max_points": 500, "nll_samples": 20}}
    configs = [tm.RunConfig.from_dict({**base, "objective": {"name": o}, "seed": s})
               for o in ("mim", "vae") for s in (0, 1, 2)]
    assert len({group_key(c) for c in configs}) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # VAE members stop early after few steps
        results = run_group(configs, [tmp_path / f"r{i}" for i in range(6)])
        ones = [tm.run(c, tmp_path / f"single{i}") for i, c in enumerate(configs[::3])]
    for i, r in enumerate(results):
        assert sorted(p.name for p in (tmp_path / f"r{i}").iterdir()) == [
            "checkpoint.pt", "config.yaml", "environment.json", "history.csv", "metrics.json",
            "model.pt"]
        assert tm.RunConfig.from_file(tmp_path / f"r{i}" / "config.yaml") == configs[i]
        saved = tm.load_model(tmp_path / f"r{i}" / "model.pt")
        assert max_diff(saved, r.model) == 0.0
    for single, grouped in zip(ones, results[::3]):  # the same runs up to float rounding
        assert set(single.metrics) == set(grouped.metrics)
        assert single.metrics["epochs"] == grouped.metrics["epochs"]
        assert grouped.metrics["mi"] == pytest.approx(single.metrics["mi"], abs=0.05)
        assert grouped.metrics["nll"] == pytest.approx(single.metrics["nll"], abs=0.05)
    mi = {o: sum(r.metrics["mi"] for r in results if r.config.objective.name == o) / 3
          for o in ("mim", "vae")}
    assert mi["mim"] > mi["vae"] + 0.3  # Fig. 3's ordering at a tiny size


def test_what_cannot_be_vectorised_is_refused_in_one_line():
    model = tm.MLPModelConfig(hidden=4).build()
    with pytest.raises(tm.ConfigError, match="objective 'ae' is not one of"):
        VectorizedTrainer([model], tm.get_objective("ae"), CFG, seeds=[0])
    with pytest.raises(tm.ConfigError, match="would couple the members"):
        VectorizedTrainer([model], tm.MIM(), dataclasses.replace(CFG, grad_clip=1.0), seeds=[0])
    with pytest.raises(tm.ConfigError, match="not built from the same model config"):
        VectorizedTrainer([model, tm.MLPModelConfig(hidden=5).build()], tm.MIM(), CFG,
                          seeds=[0, 1])
    gmm = tm.RunConfig.from_dict({"model": {"name": "mlp", "prior": "gmm"}})
    assert group_key(gmm) is None
    assert group_key(tm.RunConfig(seed=1)) == group_key(
        tm.RunConfig.from_dict({"seed": 2, "objective": {"name": "vae"}}))


# ------------------------------------------------------------------ padded latent sizes
# Members of different model.z_dim share a group, zero-padded to its largest latent size. The wider
# products and sums over z may add the same numbers in another order than the member's own run: in
# float64 a few epochs stay within 1e-12 (measured: ≤ 6e-17 in the weights after 5 epochs; float32
# gives ≤ 3e-8), so 1e-12 catches any real difference (a wrong noise stream, a leaked padded term).
PAD_TOL = 1e-12


def assert_same_run(vt: VectorizedTrainer, i: int, single: Trainer) -> None:
    """Member ``i`` is ``single``'s run: weights, best epoch and every logged number."""
    assert max_diff(single.model, vt.member_model(i)) < PAD_TOL
    assert vt.members[i].best_epoch == single.best_epoch
    ours, theirs = strip(vt.members[i].history), strip(single.history)
    assert [list(h) for h in ours] == [list(h) for h in theirs]  # the same logged terms
    for a, b in zip(ours, theirs):
        assert a == pytest.approx(b, rel=PAD_TOL, abs=PAD_TOL)


def test_members_of_different_latent_sizes_train_as_they_do_alone(float64):
    # breaks if a padded member draws other noise (e.g. its noise drawn at the padded size, which
    # takes other numbers from its stream), if a padded unit reaches its loss, or if a member is
    # initialised or sliced back in the wrong rows ([means | log-variances] each padded at its end);
    # early stopping leaves a z_dim-2 member training alone in the padded stack (epoch 8)
    cfg = dataclasses.replace(CFG, epochs=8, patience=0)
    seeds, z_dims = [0, 1, 2, 3], [5, 2, 5, 2]
    objectives = [tm.MIM(), tm.VAE(), tm.VAE(), tm.MIM()]  # MIM's decoder path from epoch 3 on
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # early stops after few steps, on purpose
        vt = group(seeds, objectives, cfg, z_dims=z_dims)
        singles = [alone(s, o, cfg, z_dim=z) for s, o, z in zip(seeds, objectives, z_dims)]
    assert vt.z_dim == 5 and vt.params["decoder.network.0.weight"].shape == (4, 8, 5)
    for i, single in enumerate(singles):
        assert_same_run(vt, i, single)
        assert (vt.members[i].epoch, vt.members[i].stopped_early) == (single.epoch,
                                                                      single.stopped_early)
    assert [s.epoch for s in vt.members] == [7, 8, 7, 4]  # members leave the stack on their own


def test_the_mask_keeps_padded_coordinates_out_of_every_log_density_over_z(float64):
    # MIM members only (all take the decoder path): drop the mask from any one of log q(z|x) and
    # log p(z) on either path (the `mask`/`dmask` arguments in VectorizedTrainer._loss) and the
    # z_dim-2 member fails here — checked by deleting each of the four in turn: log q(z|x) moves its
    # weights (the padded log-variances get gradients) and its logged terms; log p(z) leaves the
    # weights (z's padded coordinates are 0) but shifts log p(z) and the validation loss by
    # (5 − 2)·log √(2π) per point
    vt = group([7, 8], tm.MIM(), CFG, z_dims=[2, 5])
    single = alone(7, tm.MIM(), CFG, z_dim=2)
    assert "train/decoder/log_pz" in vt.members[0].history[-1]
    assert_same_run(vt, 0, single)


def test_padded_weights_stay_zero_and_members_save_their_own_shapes(tmp_path, float64):
    cfg = dataclasses.replace(CFG, epochs=3)
    dirs = [tmp_path / "z2", tmp_path / "z5"]
    vt = group([4, 5], [tm.MIM(), tm.VAE()], cfg, out_dirs=dirs, z_dims=[2, 5])
    # member 0 (z_dim 2 of 5) after 3 epochs × 5 batches: its padded rows and columns, and Adam's
    # moments there, are exactly 0 (breaks if any padded unit gets a gradient or Adam moves it)
    for stack in (vt.params, vt.exp_avg, vt.exp_avg_sq):
        enc, dec = stack["encoder.network.2.weight"][0], stack["decoder.network.0.weight"][0]
        assert bool((enc[2:5] == 0).all() and (enc[7:10] == 0).all() and (dec[:, 2:] == 0).all())
        bias = stack["encoder.network.2.bias"][0]
        assert bool((bias[2:5] == 0).all() and (bias[7:10] == 0).all())
    assert vt.members[0].adam_steps == 15 and bool((vt.params["encoder.network.2.weight"][0, :2]
                                                   != 0).all())
    # its checkpoint is the one its own run writes: same keys and shapes (model, best model, Adam)
    plain = alone(4, tm.MIM(), cfg, z_dim=2, out_dir=tmp_path / "plain")
    ours, theirs = (read_checkpoint(d / "checkpoint.pt") for d in (dirs[0], tmp_path / "plain"))
    for key in ("model_state", "best_state"):
        assert {k: v.shape for k, v in ours[key].items()} == {
            k: v.shape for k, v in theirs[key].items()}
    assert ours["model_state"]["decoder.network.0.weight"].shape == (8, 2)
    assert [{k: v.shape for k, v in st.items()} for st in ours["optimizer"]["state"].values()] == [
        {k: v.shape for k, v in st.items()} for st in theirs["optimizer"]["state"].values()]
    # ... so a plain Trainer resumes it and ends where the member's own run ends
    data, model = member(4, z_dim=2)
    longer = dataclasses.replace(cfg, epochs=5)
    resumed = Trainer(model, tm.MIM(), dataclasses.replace(longer, seed=4), out_dir=dirs[0])
    resumed.fit(data.train, data.val[0], resume=True)
    straight = alone(4, tm.MIM(), longer, z_dim=2)
    assert max_diff(straight.model, resumed.model) < PAD_TOL
    # and a group resumes from a plain Trainer's checkpoint (padded back into the stack)
    again = group([4, 5], [tm.MIM(), tm.VAE()], longer, out_dirs=[tmp_path / "plain", None],
                  z_dims=[2, 5], resume=True)
    assert again.members[0].history[0] == plain.history[0]  # the checkpoint's own history
    assert_same_run(again, 0, straight)
    # a checkpoint of another latent size is refused in one line
    small_vae = VectorizedTrainer([member(5, z_dim=2)[1]], tm.VAE(), cfg, seeds=[5])
    with pytest.raises(tm.CheckpointError, match="does not match this model"):
        small_vae.load_member(0, dirs[1] / "checkpoint.pt")  # member 1's, of z_dim 5


def test_group_key_ignores_the_latent_size_and_nothing_else():
    from torchmim.experiments import get_sweep
    from torchmim.experiments.runner import plan_units
    from torchmim.experiments.spec import expand

    def key(**over):
        base = {"model": {"name": "mlp", "x_dim": 20, "z_dim": 2, "hidden": 50},
                "data": {"name": "gmm20d"}, "seed": 0, "objective": {"name": "mim"}}
        for name, value in over.items():
            part, _, field_ = name.partition("__")
            if field_:
                base[part] = {**base[part], field_: value}
            else:
                base[part] = value
        return group_key(tm.RunConfig.from_dict(base))

    # breaks if group_key keeps z_dim (fig4/fig5 split again by latent size) or drops too much
    assert key() == key(model__z_dim=20, seed=3, objective={"name": "vae"})
    for other in ({"model__hidden": 20}, {"model__x_dim": 10}, {"model__depth": 2},
                  {"model__activation": "relu"}, {"data": {"name": "gmm2d"}},
                  {"train": {"lr": 1e-2}}):
        assert key(**other) != key()
    assert key(model__prior="gmm") is None  # still not vectorisable
    # the sweep runner's plan: by default one group per latent size (padding measured no faster);
    # with pad_latents the 200 cells of fig4 (10 latent sizes × 2 objectives × 10 seeds, width 50)
    # fit GROUP_UNITS = 10,000 hidden units in one group, but GROUP_MEMBERS = 40 splits them into
    # 5 groups of two neighbouring latent sizes (breaks if the cap or the order is lost)
    cells = expand(get_sweep("fig4"))
    plain = plan_units(cells)
    assert [(len(u), vec) for u, vec in plain] == [(20, True)] * 10
    assert all(len({c.config.model.z_dim for c in u}) == 1 for u, _ in plain)
    units = plan_units(cells, pad_latents=True)
    assert [(len(u), vec) for u, vec in units] == [(40, True)] * 5
    assert [sorted({c.config.model.z_dim for c in u}) for u, _ in units] == [
        [z, z + 2] for z in (2, 6, 10, 14, 18)]
    assert [(len(u), vec) for u, vec in plan_units(cells, group_members=200, pad_latents=True)
            ] == [(200, True)]
    shuffled = plan_units(cells[::-1], group_members=100, pad_latents=True)  # by latent size
    assert [sorted({c.config.model.z_dim for c in u}) for u, _ in shuffled] == [
        [2, 4, 6, 8, 10], [12, 14, 16, 18, 20]]


def test_run_group_of_latent_sizes_writes_each_runs_own_model(tmp_path):
    # breaks if model.pt (or the evaluation, which loads the member's own model) sees the padded
    # stack: keys, shapes and weights must be those `run` writes for that config alone
    base = {"model": {"name": "mlp", "hidden": 8}, "data": {"name": "gmm2d", "n_train": 400,
            "n_val": 200, "n_test": 200}, "train": {"epochs": 3, "progress": False},
            "eval": {"max_points": 200, "nll_samples": 5}}
    configs = [tm.RunConfig.from_dict({**base, "model": {**base["model"], "z_dim": z},
                                       "objective": {"name": o}, "seed": s})
               for z, o, s in ((2, "mim", 0), (3, "vae", 1))]
    results = run_group(configs, [tmp_path / "g0", tmp_path / "g1"])
    single = tm.run(configs[0], tmp_path / "alone")
    saved, plain = (tm.load_model(tmp_path / d / "model.pt") for d in ("g0", "alone"))
    assert {k: v.shape for k, v in saved.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()}
    assert max_diff(saved, plain) < 1e-5  # float32 and 2·sigmoid(2x) − 1 for tanh: rounding only
    assert saved.config == plain.config and results[1].model.config.z_dim == 3
    assert results[0].metrics["mi"] == pytest.approx(single.metrics["mi"], abs=1e-3)
    assert results[0].metrics["recon_rmse"] == pytest.approx(single.metrics["recon_rmse"],
                                                             rel=1e-4)
