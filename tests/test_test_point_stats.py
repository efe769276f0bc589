"""Per-test-point values (``points.npz``) and the claims paired over test images.

Covers metrics.importance_sampled_nll(reduction="none"), metrics.knn_correct,
evaluation.evaluate_points, statistics.compare_points, the image sweep's test_point_claims figure
and scripts/image_points.py (backfill of sweeps from before eval.save_points).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

import torchmim as tm
from torchmim import evaluation, metrics
from torchmim.experiments.figures import FigureSkipped
from torchmim.experiments.images import test_point_claims as point_claims_figure
from torchmim.experiments.runner import run_sweep
from torchmim.experiments.spec import FigureSpec, SweepSpec
from torchmim.experiments.statistics import compare_points, paired_test

from .helpers import load_file


def _script():
    return load_file("scripts/image_points.py")


# ---------------------------------------------------------------------------- metrics
def test_nll_reduction_none_is_the_per_point_nll_of_the_same_draws():
    # fails if "none" used other draws than "mean" (a second seeded pass with a different
    # batching), returned log-likelihoods instead of NLLs, or lost/reordered points
    model = tm.MLPModelConfig(hidden=4).build()
    x = torch.randn(37, 2)
    opts = {"batch_size": 16, "max_pairs": 100, "seed": 3}
    mean = metrics.importance_sampled_nll(model, x, 20, **opts)
    points = metrics.importance_sampled_nll(model, x, 20, reduction="none", **opts)
    assert isinstance(mean, float)
    assert points.dtype == np.float64 and points.shape == (37,)
    # float32 per-batch sums in the "mean" path, float64 over the points here
    assert points.mean() == pytest.approx(mean, rel=1e-6)
    # per point: the same values as evaluating each batch alone is not guaranteed (draws), but
    # the first batch of 16 under the same seed draws the same samples
    first = metrics.importance_sampled_nll(model, x[:16], 20, reduction="none", **opts)
    np.testing.assert_allclose(points[:16], first, rtol=1e-6)
    with pytest.raises(tm.ConfigError, match="reduction must be 'mean' or 'none'"):
        metrics.importance_sampled_nll(model, x, 20, reduction="sum")


def test_knn_correct_is_per_point_and_its_mean_is_knn_accuracy():
    # fails if knn_correct compared predictions with the wrong labels/order or knn_accuracy
    # stopped being its mean (sklearn's score)
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    zt, yt = rng.normal(size=(60, 3)), rng.integers(0, 3, 60)
    zs, ys = rng.normal(size=(25, 3)), rng.integers(0, 3, 25)
    correct = metrics.knn_correct(zt, yt, zs, ys, k=5)
    expected = KNeighborsClassifier(n_neighbors=5).fit(zt, yt).predict(zs) == ys
    assert correct.dtype == bool and np.array_equal(correct, expected)
    assert metrics.knn_accuracy(zt, yt, zs, ys, k=5) == float(correct.mean())
    assert metrics.knn_accuracy(zt, yt, zs, ys, k=5) == KNeighborsClassifier(
        n_neighbors=5).fit(zt, yt).score(zs, ys)
    with pytest.raises(tm.DataError, match="k must be between 1"):
        metrics.knn_correct(zt, yt, zs, ys, k=61)
    with pytest.raises(tm.DataError, match="labels and codes differ"):
        metrics.knn_correct(zt, yt[:-1], zs, ys)


def test_evaluate_points_is_evaluate_plus_the_points_of_the_same_pass():
    # fails if the metrics of evaluate_points differ from evaluate's (another pass, other seeds)
    # or the points do not average to them
    model = tm.MLPModelConfig(hidden=4).build()
    x, y = torch.randn(40, 2), torch.randint(0, 2, (40,))
    xtr, ytr = torch.randn(30, 2), torch.randint(0, 2, (30,))
    kw = {"y_test": y, "x_train": xtr, "y_train": ytr, "seed": 5, "mi": False,
          "nll_samples": 4, "nll_points": 25, "extra_knn_k": [1, 3]}
    m, points = evaluation.evaluate_points(model, x, **kw)
    assert m == evaluation.evaluate(model, x, **kw)
    assert np.array_equal(points["test_index"], np.arange(40))
    assert points["nll"].shape == (25,) and points["nll"].mean() == pytest.approx(m["nll"],
                                                                                  rel=1e-6)
    assert int(points["knn_k"]) == 5
    assert float(points["knn_correct_k5"].mean()) == m["knn_acc"]
    for k in (1, 3):
        assert float(points[f"knn_correct_k{k}"].mean()) == m[f"knn_acc_k{k}"]
    with pytest.raises(tm.ConfigError, match="eval.save_points: expected true/false"):
        evaluation.EvalConfig(save_points="yes")


# ---------------------------------------------------------------------------- statistics
def _points(nll, correct, n_test=None):
    n_test = len(correct) if n_test is None else n_test
    return {"nll": np.asarray(nll, dtype=np.float64), "knn_correct_k5": np.asarray(correct),
            "knn_k": np.asarray(5), "test_index": np.arange(n_test)}


def test_compare_points_nll_is_paired_tests_t_test_and_interval():
    # fails if the NLL row is not a paired t-test over points, its interval not the seeded
    # bootstrap of paired_test, or the verdict's direction is flipped
    rng = np.random.default_rng(1)
    b = rng.normal(100, 5, 200)
    correct = np.ones(200, bool)
    for shift, verdict in ((0.5, "holds"), (-0.5, "opposite"), (0.0, "not significant")):
        a = b + shift + rng.normal(0, 0.3, 200) * (shift != 0) + (shift == 0) * rng.normal(
            0, 1e-3, 200)
        rows = compare_points(_points(a, correct), _points(b, correct), seed=2, n_boot=2000)
        nll = next(r for r in rows if r["metric"] == "nll")
        ref = paired_test(a, b, claim="higher", resamples=2000, seed=2,
                          interval="bootstrap")
        assert nll["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
        assert (nll["ci_low"], nll["ci_high"]) == (ref["ci_low"], ref["ci_high"])
        assert nll["diff_mean"] == pytest.approx(np.mean(a - b), rel=1e-12, abs=1e-15)
        assert nll["a_mean"] == pytest.approx(a.mean()) and nll["n"] == 200
        assert nll["test"] == "paired t" and nll["claim"] == "higher"
        if shift:
            assert nll["verdict"] == verdict == ref["verdict"]
        else:
            assert nll["verdict"] == ref["verdict"]


def test_compare_points_knn_is_an_exact_mcnemar_test():
    # fails if the McNemar test counted concordant points, used the wrong discordant counts or
    # a normal approximation, or the accuracy difference had the wrong sign
    n = 300
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:150] = b[:150] = True  # concordant correct
    a[150:170] = True  # 20 only a
    b[170:174] = True  # 4 only b
    nll = np.zeros(n)
    rows = compare_points(_points(nll, a), _points(nll, b), n_boot=3000)
    knn = next(r for r in rows if r["metric"] == "knn_acc")
    assert (knn["a_only"], knn["b_only"]) == (20, 4)
    assert knn["p"] == stats.binomtest(20, 24, 0.5).pvalue
    assert knn["diff_mean"] == pytest.approx((170 - 154) / n)
    assert knn["a_mean"] == pytest.approx(170 / n) and knn["test"] == "McNemar exact"
    assert knn["ci_low"] > 0 and knn["verdict"] == "holds"
    reverse = next(r for r in compare_points(_points(nll, b), _points(nll, a), n_boot=3000)
                   if r["metric"] == "knn_acc")
    assert reverse["verdict"] == "opposite" and reverse["p"] == knn["p"]
    same = next(r for r in compare_points(_points(nll, a), _points(nll, a), n_boot=100)
                if r["metric"] == "knn_acc")
    assert same["p"] == 1.0 and same["verdict"] == "not significant"  # no discordant pairs
    nll_row = next(r for r in rows if r["metric"] == "nll")
    assert nll_row["p"] == 1.0 and nll_row["verdict"] == "not significant"  # all differences 0


def test_compare_points_refuses_points_of_different_test_images():
    # fails if points of different test sets (lengths or order) were silently paired
    a = _points(np.zeros(10), np.ones(10, bool))
    with pytest.raises(tm.DataError, match="different test points"):
        compare_points(a, _points(np.zeros(10), np.ones(12, bool)))
    with pytest.raises(tm.DataError, match="not the same test images"):
        compare_points(a, {**a, "nll": np.zeros(9)})
    flipped = {**a, "test_index": np.arange(10)[::-1]}
    with pytest.raises(tm.DataError, match="different test points"):
        compare_points(a, flipped)


# ---------------------------------------------------------------------------- runs and sweeps
def _toy_sweep(save_points: bool) -> SweepSpec:
    base = {"model": {"hidden": 4}, "train": {"epochs": 1},
            "data": {"n_train": 120, "n_val": 60, "n_test": 80},
            "eval": {"mi": False, "max_points": 80, "nll_samples": 4, "nll_points": 50,
                     "extra_knn_k": [1], "save_points": save_points}}
    return SweepSpec(name="points", base=base, grid={"objective.name": ["mim", "vae"],
                                                     "seed": [0]},
                     figures=[FigureSpec("test_point_claims", "claims_test_points.md",
                                         {"csv": "claims_test_points.csv", "n_boot": 200})])


def test_save_points_writes_the_points_and_the_script_recomputes_them(tmp_path):
    # fails if a run with eval.save_points writes no points.npz (or other values than its
    # metrics), if a sweep folder from before save_points no longer counts as finished (the base
    # differs only in save_points), or if the backfill script does not rebuild the same points
    out = tmp_path / "sweep"
    old = run_sweep(_toy_sweep(False), out, workers=1, progress=False, vectorize=False)
    assert old.complete
    cells = sorted(p for p in (out / "cells").iterdir())
    assert not any((c / "points.npz").exists() for c in cells)
    state = json.loads((out / "sweep.json").read_text())
    assert "claims_test_points.md" in state["skipped_figures"]  # no points: skipped, not failed
    new = run_sweep(_toy_sweep(True), out, workers=1, progress=False, vectorize=False)
    assert new.complete and [r["nll"] for r in new.rows] == [r["nll"] for r in old.rows]
    script = _script()
    lines: list[str] = []
    report = script.backfill(out, echo=lines.append)
    assert [r["cell"] for r in report] == [c.name for c in cells] and all(r["ok"] for r in report)
    assert all("nll saved" in line for line in lines)
    for cell in cells:
        saved = json.loads((cell / "metrics.json").read_text())
        points = evaluation.read_points(cell / "points.npz")
        assert points["nll"].shape == (50,)
        assert points["nll"].mean() == pytest.approx(saved["nll"], rel=1e-6)
        assert float(points["knn_correct_k5"].mean()) == saved["knn_acc"]
        assert float(points["knn_correct_k1"].mean()) == saved["knn_acc_k1"]
    assert script.write_claims_figure(out, echo=lines.append) == out / "claims_test_points.md"
    text = (out / "claims_test_points.md").read_text()
    assert "Claims paired over test images" in text and "| nll |" in text
    assert "test-sample" in text or "test sample" in text

    # a fresh run with save_points: points.npz beside metrics.json, the same values as backfilled
    fresh = tmp_path / "fresh"
    run_sweep(_toy_sweep(True), fresh, workers=1, progress=False, vectorize=False)
    for cell in cells:
        a = evaluation.read_points(fresh / "cells" / cell.name / "points.npz")
        b = evaluation.read_points(cell / "points.npz")
        assert set(a) == set(b)
        np.testing.assert_allclose(a["nll"], b["nll"], rtol=1e-6)
        assert np.array_equal(a["knn_correct_k5"], b["knn_correct_k5"])
    assert (fresh / "claims_test_points.csv").is_file()

    # the script's recompute path: delete one points.npz, backfill restores the same arrays
    target = fresh / "cells" / cells[0].name / "points.npz"
    before = evaluation.read_points(target)
    target.unlink()
    report = script.backfill(fresh, echo=lines.append)
    assert [r["cell"] for r in report] == [cells[0].name]
    after = evaluation.read_points(target)
    np.testing.assert_allclose(after["nll"], before["nll"], rtol=1e-6)
    assert np.array_equal(after["knn_correct_k5"], before["knn_correct_k5"])


def test_the_script_and_figure_fail_in_one_line(tmp_path):
    # fails if a missing folder or a folder without finished cells gave a traceback
    script = _script()
    with pytest.raises(SystemExit, match="is not a folder"):
        script.backfill(tmp_path / "missing")
    with pytest.raises(SystemExit, match="no finished cell"):
        script.backfill(tmp_path)
    with pytest.raises(FigureSkipped, match="no finished cell pair"):
        point_claims_figure(_toy_sweep(True), tmp_path, [], [])


# ---------------------------------------------------------------------------- review fixes
TINY_RUN = ["data.n_train=256", "data.n_val=128", "data.n_test=128", "eval.nll_samples=5",
            "eval.max_points=128", "model.hidden=4", "train.epochs=2", "train.warmup_epochs=1",
            "train.early_stopping=false", "train.progress=false", "eval.mi=false"]


def _run_config(*extra: str):
    from torchmim.config import apply_overrides
    from torchmim.runs import RunConfig

    return RunConfig.from_dict(apply_overrides({}, TINY_RUN + list(extra)))


def test_a_resumed_finish_without_save_points_removes_the_stale_points(tmp_path, one_thread):
    # fails if a resume for more epochs without eval.save_points left the first finish's
    # points.npz (another model's values) beside the new metrics.json
    from torchmim.runs import run

    out = tmp_path / "run"
    run(_run_config("eval.save_points=true"), out)
    assert (out / "points.npz").is_file()
    result = run(_run_config("train.epochs=3"), out, resume=True, progress=False)
    assert result.metrics["epochs"] == 3
    assert (out / "metrics.json").is_file() and not (out / "points.npz").exists()


def test_read_points_of_an_empty_or_truncated_file_is_one_line(tmp_path):
    # fails if an empty file (EOFError), a cut zip (BadZipFile) or a zip without the arrays'
    # members gave a traceback instead of one DataError naming the file
    good = tmp_path / "good.npz"
    evaluation.write_points(good, _points(np.zeros(8), np.ones(8, bool)))
    data = good.read_bytes()
    for name, content in (("empty.npz", b""), ("cut.npz", data[: len(data) // 2]),
                          ("head.npz", data[:40])):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(tm.DataError, match=f"cannot read the test points .*{name}") as e:
            evaluation.read_points(path)
        assert "\n" not in str(e.value)


def test_points_carry_a_fingerprint_and_compare_points_checks_it():
    # fails if x_sha256 is not the sha256 of the float32 test images measured, if nll_samples /
    # nll_points are not stored, or if compare_points paired points of other images or another
    # NLL estimate; points without a fingerprint (older files) still compare
    import hashlib

    model = tm.MLPModelConfig(hidden=4).build()
    x = torch.randn(30, 2)
    kw = {"seed": 1, "mi": False, "nll_samples": 3, "nll_points": 20, "max_points": 25}
    _, points = evaluation.evaluate_points(model, x, **kw)
    expected = hashlib.sha256(x[:25].numpy().astype(np.float32).tobytes()).hexdigest()
    assert str(points["x_sha256"]) == expected
    assert int(points["nll_samples"]) == 3 and int(points["nll_points"]) == 20
    _, other = evaluation.evaluate_points(model, x + 1, **kw)
    assert str(other["x_sha256"]) != expected
    compare_points(points, points, n_boot=10)  # the same images: fine
    with pytest.raises(tm.DataError, match="x_sha256"):
        compare_points(points, other, n_boot=10)
    for key in ("nll_samples", "nll_points"):
        with pytest.raises(tm.DataError, match=key):
            compare_points(points, {**points, key: np.asarray(99)}, n_boot=10)
    old = {k: v for k, v in other.items() if k not in ("x_sha256", "nll_samples", "nll_points")}
    assert [r["metric"] for r in compare_points(points, old, n_boot=10)] == ["nll"]


def test_output_only_keys_are_ignored_in_base_and_overrides():
    # fails if a base whose eval section held only save_points differed from one without eval,
    # or an eval.save_points=... override made a folder's cells unshareable
    from torchmim.experiments.runner import _compatible, _outcome

    assert _outcome({"eval": {"save_points": True}, "seed": 1}) == {"seed": 1}
    assert _outcome({"eval": {"save_points": True, "mi": False}}) == {"eval": {"mi": False}}
    old = {"base": {"train": {"epochs": 1}}, "overrides": ["train.epochs=2"], "grid": {}}
    new = {"base": {"train": {"epochs": 1}, "eval": {"save_points": True}},
           "overrides": ["train.epochs=2", "eval.save_points=true"], "grid": {}}
    assert _compatible(old, new) and _compatible(new, old)
    assert not _compatible(old, {**new, "overrides": ["train.epochs=3"]})
    assert not _compatible(old, {**new, "base": {"eval": {"mi": False}}})


def test_point_claims_name_each_rows_side_and_refuse_mim_and_amim_together(tmp_path):
    # fails if a setting with both a mim and an amim cell silently picked one, or if A-MIM rows
    # were labelled MIM
    from torchmim.experiments.spec import expand
    from torchmim.experiments.statistics import points_markdown

    spec = SweepSpec(name="both", base={"model": {"hidden": 4}},
                     grid={"objective.name": ["mim", "amim", "vae"], "seed": [0]})
    with pytest.raises(tm.ConfigError, match="both a mim and a amim cell") as e:
        point_claims_figure(spec, tmp_path, [], expand(spec))
    assert "\n" not in str(e.value)
    rows = compare_points(_points(np.arange(6.0), np.ones(6, bool)),
                          _points(np.arange(6.0) + 1, np.ones(6, bool)), n_boot=10)
    table = [{"model": "pixel", "a": "amim", "b": "vae", **r} for r in rows]
    text = points_markdown(table, ["model"], ("mim", "vae"))
    assert "A-MIM mean" in text and "| A-MIM > VAE |" in text and "| MIM " not in text
    mixed = points_markdown(table + [{**table[0], "model": "conv", "a": "mim"}], ["model"],
                            ("mim", "vae"))
    assert "A-MIM/MIM mean" in mixed and "| MIM > VAE |" in mixed and "| A-MIM > VAE |" in mixed


def test_the_script_refuses_a_device_it_cannot_use(tmp_path):
    # fails if a cell trained on cuda were silently re-evaluated on the CPU (or crashed deep in
    # torch) on a machine without CUDA
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    import yaml

    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "config.yaml").write_text(yaml.safe_dump(_run_config("train.device=cuda").to_dict()))
    with pytest.raises(tm.ConfigError, match="CUDA is not available"):
        _script().recompute_points(cell)


def test_the_script_writes_no_points_on_a_mismatch_and_takes_the_run_lock(tmp_path, capsys):
    # fails if a cell whose recomputed nll differs from metrics.json got a points.npz (and a
    # figure) without --accept-mismatch, if the exit were not 1 with one line naming cell, metric
    # and values, or if a cell whose run holds its folder lock were written meanwhile
    import fcntl
    import os

    from torchmim.runs import run

    script = _script()
    cell = tmp_path / "sweep" / "cells" / "c0"
    run(_run_config("eval.save_points=true"), cell)
    (cell / "points.npz").unlink()
    saved = json.loads((cell / "metrics.json").read_text())
    (cell / "metrics.json").write_text(json.dumps({**saved, "nll": saved["nll"] + 1.0}))
    with pytest.raises(SystemExit) as e:
        script.main([str(tmp_path / "sweep")])
    assert e.value.code == 1 and not (cell / "points.npz").exists()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "c0" in err and "nll saved" in err
    assert repr(saved["nll"] + 1.0) in err and "--accept-mismatch" in err
    assert not (tmp_path / "sweep" / "claims_test_points.md").exists()

    fd = os.open(cell / ".lock", os.O_RDWR | os.O_CREAT)  # another writer holds the run's lock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(tm.FolderLockedError):
            script.backfill(tmp_path / "sweep", accept_mismatch=True, echo=lambda line: None)
        assert not (cell / "points.npz").exists()
    finally:
        os.close(fd)
    report = script.backfill(tmp_path / "sweep", accept_mismatch=True, echo=lambda line: None)
    assert report[0]["written"] and not report[0]["ok"] and (cell / "points.npz").is_file()


def test_point_claims_follow_the_papers_side_per_setting_and_holm(tmp_path):
    # fails if a setting where the paper claims the other side (or nothing) is judged on the
    # metric's default claim, if verdicts use unadjusted p, if points without the images' sha256
    # are not flagged, or if one setting that cannot be paired aborts the whole table
    from torchmim.evaluation import write_points
    from torchmim.experiments.spec import expand

    spec = SweepSpec(name="paper-side", base={"model": {"hidden": 4}},
                     grid={"model.hidden": [4, 8, 16], "objective.name": ["mim", "vae"],
                           "seed": [0]},
                     claims={"nll": "higher", "knn_acc": "higher"},
                     claim_exceptions=[{"where": {"model.hidden": 4}, "metric": "knn_acc",
                                        "claim": "lower"},
                                       {"where": {"model.hidden": 8}, "metric": "knn_acc",
                                        "claim": None}])
    cells = expand(spec)
    rng = np.random.default_rng(0)
    b_nll = rng.normal(100, 5, 200)
    correct_b = rng.random(200) < 0.5
    correct_a = correct_b | (rng.random(200) < 0.5)  # MIM classifies more images correctly
    for cell in cells:
        mim = cell.params["objective.name"] == "mim"
        n = 150 if cell.params["model.hidden"] == 16 and mim else 200  # cannot be paired
        nll = (b_nll + 1.0 + rng.normal(0, 0.5, 200) if mim else b_nll)[:n]
        folder = tmp_path / "cells" / cell.id
        folder.mkdir(parents=True)
        write_points(folder / "points.npz", _points(nll, (correct_a if mim else correct_b)[:n]))
    rows = [{"cell": c.id} for c in cells]
    text = point_claims_figure(spec, tmp_path, rows, cells, csv="c.csv", n_boot=200)
    table = {(r["model.hidden"], r["metric"]): r for r in tm.experiments.tables.read_csv(
        tmp_path / "c.csv")}
    assert set(table) == {(4, "nll"), (4, "knn_acc"), (8, "nll"), (8, "knn_acc")}
    assert table[(4, "knn_acc")]["claim"] == "lower"
    assert table[(4, "knn_acc")]["verdict"] == "opposite"  # MIM ahead, the paper says VAE
    assert table[(8, "knn_acc")]["verdict"] == "no claim in the paper"
    assert math.isnan(table[(8, "knn_acc")]["p_holm"])  # not a claim's test: not in the family
    assert table[(4, "nll")]["verdict"] == table[(8, "nll")]["verdict"] == "holds"
    nll_p = sorted(table[(h, "nll")]["p"] for h in (4, 8))  # a family of two: Holm's ×2, ×1
    assert sorted(table[(h, "nll")]["p_holm"] for h in (4, 8)) == pytest.approx(
        [min(1, 2 * nll_p[0]), max(min(1, 2 * nll_p[0]), nll_p[1])], rel=1e-12)
    assert table[(4, "knn_acc")]["p_holm"] == table[(4, "knn_acc")]["p"]  # family of one
    assert "2 of 3 hold" in text  # the unclaimed row is not counted
    assert "model.hidden 16, seed 0: compare_points: the two models were measured on different" \
        " test points" in text  # skipped, said why
    assert "Not verified to be the same test images" in text
