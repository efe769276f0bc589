"""Paired comparisons across seeds (torchmim.experiments.statistics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from torchmim.errors import ConfigError, DataError
from torchmim.experiments.statistics import (
    PAPER_CLAIMS,
    claims_markdown,
    compare_objectives,
    compare_sweeps,
    paired_test,
    pairs_by_seed,
    write_claims,
)
from torchmim.experiments.tables import read_csv


def _rows(a: list[float], b: list[float], metric: str = "mi", hidden: int = 5,
          seeds: list[int] | None = None) -> list[dict]:
    seeds = list(range(len(a))) if seeds is None else seeds
    return ([{"model.hidden": hidden, "objective.name": "mim", "seed": s, metric: v}
             for s, v in zip(seeds, a)]
            + [{"model.hidden": hidden, "objective.name": "vae", "seed": s, metric: v}
               for s, v in zip(seeds, b)])


def test_t_statistic_matches_hand_computation():
    # catches: an unpaired (Welch) test, a wrong ddof, or the difference taken as b − a
    a = np.array([3.0, 4.5, 2.0, 5.0, 4.0, 3.5])
    b = np.array([2.0, 4.0, 2.5, 3.0, 3.0, 2.0])
    d = a - b
    t_hand = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    out = paired_test(a, b, claim="higher")
    assert out["n"] == 6
    assert out["diff_mean"] == pytest.approx(d.mean(), abs=1e-12)
    assert out["t"] == pytest.approx(t_hand, rel=1e-12)
    from scipy import stats

    p_hand = 2 * stats.t.sf(abs(t_hand), df=len(d) - 1)
    assert out["t_p"] == pytest.approx(p_hand, rel=1e-10)
    assert out["a_std"] == pytest.approx(a.std(ddof=1))
    assert 0 < out["wilcoxon_p"] <= 1  # 6 pairs: reported
    assert out["ci_low"] <= d.mean() <= out["ci_high"]


def test_bootstrap_interval_is_seeded_and_percentile_of_resampled_means():
    # catches: an unseeded generator, or an interval that is not the resampled means' quantiles
    a, b = np.array([1.0, 2.0, 4.0, 7.0]), np.array([0.0, 0.5, 1.0, 1.5])
    first = paired_test(a, b, seed=3, interval="bootstrap")
    second = paired_test(a, b, seed=3, interval="bootstrap")
    assert (first["ci_low"], first["ci_high"]) == (second["ci_low"], second["ci_high"])
    d = a - b
    rng = np.random.default_rng(3)
    means = d[rng.integers(0, 4, size=(10_000, 4))].mean(axis=1)
    assert first["ci_low"] == pytest.approx(np.quantile(means, 0.025))
    assert first["ci_high"] == pytest.approx(np.quantile(means, 0.975))
    assert "verdict" not in first  # no claim, no verdict


def test_interval_covers_true_difference_at_about_nominal_rate():
    # catches: an interval of the wrong width (e.g. std instead of standard error: ~100% coverage;
    # a fraction of it: far below 95%). Percentile bootstrap with 30 pairs covers ~93-95%.
    rng = np.random.default_rng(0)
    hits, reps = 0, 200
    for i in range(reps):
        b = rng.normal(0.0, 1.0, 30)
        a = b + 0.5 + rng.normal(0.0, 1.0, 30)  # true mean difference 0.5
        out = paired_test(a, b, resamples=1000, seed=i, interval="bootstrap")
        hits += out["ci_low"] <= 0.5 <= out["ci_high"]
    assert 0.88 <= hits / reps <= 0.99


def test_t_interval_is_the_t_tests_own_and_covers_at_five_pairs():
    # catches: the across-seed interval not being mean ± t·s/√n (e.g. z instead of t, or the
    # percentile bootstrap, which covers ~85% at 5 pairs: the second check then fails)
    from scipy import stats

    a, b = np.array([3.0, 4.5, 2.0, 5.0, 4.0]), np.array([2.0, 4.0, 2.5, 3.0, 3.0])
    d = a - b
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    out = paired_test(a, b)
    assert out["ci_low"] == pytest.approx(d.mean() - half, rel=1e-12)
    assert out["ci_high"] == pytest.approx(d.mean() + half, rel=1e-12)
    rng = np.random.default_rng(0)
    hits = sum(paired_test(x + 0.5, np.zeros(5))["ci_low"] <= 0.5
               <= paired_test(x + 0.5, np.zeros(5))["ci_high"]
               for x in rng.normal(0, 1, (400, 5)))
    assert 0.92 <= hits / 400 <= 0.98  # exact 95% for normal differences


def test_holm_matches_a_hand_computation():
    # catches: Bonferroni instead of Holm, a missing running maximum, or NaNs counted as tests
    from torchmim.experiments.statistics import holm

    p = [0.01, 0.04, 0.03, float("nan"), 0.005]
    # m = 4 tests: sorted 0.005, 0.01, 0.03, 0.04 → 4·0.005, 3·0.01, 2·0.03, max(0.06, 0.04)
    out = holm(p)
    assert out[4] == pytest.approx(0.02) and out[0] == pytest.approx(0.03)
    assert out[2] == pytest.approx(0.06) and out[1] == pytest.approx(0.06)
    assert math.isnan(out[3])
    assert holm([0.5, 0.9]) == [1.0, 1.0]


def test_verdicts_use_holm_adjusted_p_per_metric():
    # catches: verdicts judged on unadjusted p (a p = 0.02 among 5 settings would "hold")
    rng = np.random.default_rng(4)
    rows = []
    for h, shift in enumerate([3.0, 0.0, 0.0, 0.0, 0.0]):
        base = rng.normal(0, 1, 10)
        rows += _rows(list(base + shift + rng.normal(0, 1, 10)), list(base), hidden=h)
    table = compare_objectives(rows, by=["model.hidden"], claims={"mi": "higher"})
    assert [r["p_holm"] >= r["t_p"] for r in table] == [True] * 5
    assert table[0]["verdict"] == "holds"
    # one setting with p = 0.012 alone holds; five of them, Holm-adjusted (×5 = 0.061), do not
    d = np.array([0.9, 1.3, -0.2, 0.8, 1.1, 0.4, -0.5, 1.2, 0.3, 0.6])
    alone = paired_test(d, np.zeros(10), claim="higher")
    assert alone["t_p"] < 0.05 and alone["verdict"] == "holds"
    five = [r for h in range(5) for r in _rows(list(d), [0.0] * 10, hidden=h)]
    out = compare_objectives(five, by=["model.hidden"], claims={"mi": "higher"})
    assert all(r["p_holm"] == pytest.approx(min(1, 5 * alone["t_p"])) for r in out)
    assert 5 * alone["t_p"] >= 0.05 and {r["verdict"] for r in out} == {"not significant"}


def test_claim_exceptions_set_the_side_or_no_claim():
    # catches: a setting where the paper claims the other side judged on the metric's claim, or a
    # setting without a paper value given a verdict (and counted in the Holm family)
    rows = _rows([5.0, 6.0, 7.0, 8.0], [1.0, 1.5, 1.0, 2.0], hidden=1)
    rows += _rows([5.0, 6.0, 7.0, 8.0], [1.0, 1.5, 1.0, 2.0], hidden=2)
    plain = compare_objectives(rows, by=["model.hidden"], claims={"mi": "higher"})
    out = compare_objectives(rows, by=["model.hidden"], claims={"mi": "higher"},
                             claim_exceptions=[{"where": {"model.hidden": 1}, "metric": "mi",
                                                "claim": "lower"},
                                               {"where": {"model.hidden": 2}, "metric": "mi",
                                                "claim": None}])
    assert [r["verdict"] for r in plain] == ["holds", "holds"]
    assert out[0]["claim"] == "lower" and out[0]["verdict"] == "opposite"
    assert out[1]["claim"] is None and out[1]["verdict"] == "no claim in the paper"
    assert math.isnan(out[1]["p_holm"]) and out[0]["p_holm"] == pytest.approx(out[0]["t_p"])


def test_a_side_of_several_labels_pairs_a_mim_with_vae():
    # catches: A-MIM settings left unpaired ("too few pairs") in an image sweep's claims.csv, or
    # a MIM and an A-MIM run of one seed silently both used
    rows = _rows([5.0, 6.0, 7.0], [1.0, 1.5, 1.0], hidden=1)
    rows += [{**r, "objective.name": "amim", "model.hidden": 2} for r in
             _rows([5.0, 6.0, 7.0], [1.0, 1.5, 1.0]) if r["objective.name"] == "mim"]
    rows += [{**r, "model.hidden": 2} for r in _rows([0.0] * 3, [1.0, 1.5, 1.0])
             if r["objective.name"] == "vae"]
    out = compare_objectives(rows, by=["model.hidden"], claims={"mi": "higher"},
                             compare=(("mim", "amim"), "vae"))
    assert [r["n"] for r in out] == [3, 3] and out[1]["diff_mean"] == out[0]["diff_mean"]
    rows.append({"model.hidden": 2, "objective.name": "mim", "seed": 0, "mi": 1.0})
    with pytest.raises(DataError, match="cannot pair"):
        compare_objectives(rows, by=["model.hidden"], claims={"mi": "higher"},
                           compare=(("mim", "amim"), "vae"))


def test_pairs_are_matched_by_seed_not_by_row_order():
    # catches: pairing the i-th MIM row with the i-th VAE row
    rows = _rows([10.0, 20.0, 30.0], [1.0, 2.0, 3.0])
    rows = rows[:3] + rows[3:][::-1]  # VAE rows in reverse order
    p = pairs_by_seed(rows, "mi", by=["model.hidden"])[(5,)]
    assert p["seeds"] == [0, 1, 2]
    np.testing.assert_array_equal(p["a"] - p["b"], [9.0, 18.0, 27.0])


def test_missing_pairs_and_nan_values_are_left_out_and_counted():
    # catches: a crash on unmatched seeds, or NaN/None values counted as pairs
    rows = _rows([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0], seeds=[0, 1, 2, 3])  # VAE has no seed 3
    rows[0]["mi"] = float("nan")  # MIM seed 0 failed to give a value
    rows.append({"model.hidden": 5, "objective.name": "amim", "seed": 0, "mi": 99.0})  # ignored
    table = compare_objectives(rows, by=["model.hidden"])
    (row,) = table
    assert row["n"] == 2 and row["unpaired"] == 2  # seeds 1, 2 paired; 0 (NaN) and 3 not
    assert row["diff_mean"] == pytest.approx(2.5)


def test_too_few_pairs_and_zero_differences_are_reported_not_raised():
    # catches: scipy's NaN/ValueError on degenerate input leaking out
    one = paired_test([1.0], [0.0], claim="higher")
    assert one["verdict"] == "too few pairs" and math.isnan(one["t_p"])
    assert math.isnan(one["a_std"])
    empty = paired_test([], [], claim="lower")
    assert empty["n"] == 0 and empty["verdict"] == "too few pairs"
    zeros = paired_test([1.0] * 7, [1.0] * 7, claim="higher")
    assert zeros["t_p"] == 1.0 and zeros["wilcoxon_p"] == 1.0
    assert zeros["verdict"] == "not significant"
    const = paired_test([2.0] * 3, [1.0] * 3, claim="higher")  # every difference +1
    # no spread: the exact sign test, 2^(1-n) = 0.25 for 3 pairs, is not evidence (it was p = 0)
    assert const["t"] == math.inf and const["t_p"] == 0.25
    assert const["verdict"] == "not significant"
    assert math.isnan(const["wilcoxon_p"])  # below 6 pairs
    six = paired_test([2.0] * 6, [1.0] * 6, claim="higher")
    assert six["t_p"] == pytest.approx(1 / 32) and six["verdict"] == "holds"
    with pytest.raises(DataError, match="non-finite"):
        paired_test([1.0, float("nan")], [0.0, 0.0])
    ties = paired_test([1.0, 2.0, 3.0, 3.0, 5.0, 6.0, 7.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert 0 < ties["wilcoxon_p"] < 1  # one zero difference dropped, ties among the rest


def test_verdicts_follow_the_claimed_direction():
    # catches: the direction of a claim ignored (e.g. "lower" judged as "higher")
    rng = np.random.default_rng(1)
    b = rng.normal(0, 1, 10)
    a = b + 1.0 + rng.normal(0, 0.1, 10)
    assert paired_test(a, b, claim="higher")["verdict"] == "holds"
    assert paired_test(a, b, claim="lower")["verdict"] == "opposite"
    noise = b + rng.normal(0, 1e-3, 10)  # zero-mean differences (here t = -0.74, p = 0.48)
    assert paired_test(noise, b, claim="higher")["verdict"] == "not significant"
    with pytest.raises(ConfigError, match="higher' or 'lower"):
        paired_test(a, b, claim="up")
    with pytest.raises(DataError, match="cannot be paired"):
        paired_test(a, b[:3])


def test_duplicate_seed_is_a_clear_error():
    rows = _rows([1.0, 2.0], [0.0, 0.0])
    rows.append(dict(rows[0]))
    with pytest.raises(DataError, match="cannot pair"):
        compare_objectives(rows, by=["model.hidden"])


def test_write_claims_files_and_skips(tmp_path):
    # catches: the files not written for a two-objective seeded sweep, or written without seeds
    rows = (_rows([5.0, 6.0, 5.5], [1.0, 1.2, 0.9], hidden=5)
            + _rows([5.0, 6.0, 5.5], [1.0, 1.2, 0.9], hidden=20))
    for r in rows:
        mim = r["objective.name"] == "mim"
        r["nll"] = 2.0 + (0.2 + 0.02 * r["seed"] if mim else 0.0) + 0.01 * r["seed"]
    spec = {"name": "t", "grid": {"model.hidden": [5, 20], "objective.name": ["vae", "mim"],
                                  "seed": [0, 1, 2]}}
    table = write_claims(rows, spec, tmp_path)
    assert [(r["model.hidden"], r["metric"]) for r in table] == [
        (5, "mi"), (5, "nll"), (20, "mi"), (20, "nll")]
    saved = read_csv(tmp_path / "claims.csv")
    assert saved[0]["metric"] == "mi" and saved[0]["n"] == 3
    assert saved[1]["verdict"] == "holds"  # NLL: MIM − VAE = +0.20, +0.22, +0.24
    md = (tmp_path / "claims.md").read_text()
    assert md.startswith("| model.hidden | metric |") and "MIM > VAE" in md
    assert md == claims_markdown(table, ["model.hidden"])
    no_seeds = {"name": "t", "grid": {"objective.name": ["vae", "mim"]}}
    assert write_claims(rows, no_seeds, tmp_path) == []
    assert not (tmp_path / "claims.csv").exists()  # a stale table is removed
    assert write_claims(rows, {**spec, "claims": {}}, tmp_path) == []
    with pytest.raises(ConfigError, match="claims.mi"):
        write_claims(rows, {**spec, "claims": {"mi": "more"}}, tmp_path)


def test_paper_claims_directions():
    # catches: a flipped direction in the paper's claims (Fig. 3: MIM higher MI and k-NN accuracy,
    # lower reconstruction error; VAE lower NLL, i.e. MIM − VAE > 0)
    assert PAPER_CLAIMS == {"mi": "higher", "mi_standardized": "higher", "mi_rank": "higher",
                            "nll": "higher",
                            "recon_error": "lower", "knn_acc": "higher"}


def test_sweep_spec_checks_claims_and_compare():
    from torchmim.experiments.spec import SweepSpec

    with pytest.raises(ConfigError, match="claims.nll"):
        SweepSpec(name="s", claims={"nll": "better"})
    with pytest.raises(ConfigError, match="compare"):
        SweepSpec(name="s", compare=["mim", "mim"])
    assert SweepSpec(name="s").claims is None  # default: PAPER_CLAIMS


def test_a_sweep_writes_claims_and_the_report_regenerates_them(tmp_path):
    # catches: the runner not writing claims.csv/claims.md for a two-objective seeded sweep, and
    # `torchmim report` not recomputing them for an existing folder (deleted here first)
    import json

    from torchmim.experiments import SweepSpec, run_sweep
    from torchmim.report import build_report

    spec = SweepSpec(
        name="tiny", x="model.hidden",
        base={"data": {"name": "gmm", "means": [[0, 0], [2, 2]], "std": 0.3, "n_train": 200,
                       "n_val": 100, "n_test": 200},
              "train": {"epochs": 1}, "eval": {"nll_samples": 5, "max_points": 200}},
        grid={"model.hidden": [4], "objective.name": ["mim", "vae"], "seed": [0, 1]})
    out = tmp_path / "res"
    result = run_sweep(spec, out, workers=1, progress=False, figures=False)
    assert result.complete
    table = read_csv(out / "claims.csv")
    assert [r["metric"] for r in table] == [m for m in PAPER_CLAIMS
                                             if m not in ("mi_rank", "mi_standardized")]
    assert all(r["n"] == 2 and r["model.hidden"] == 4 for r in table)
    assert json.loads((out / "sweep.json").read_text())["spec"]["claims"] is None
    md = (out / "claims.md").read_text()
    assert md.count("\n") == 2 + len(table)
    (out / "claims.csv").unlink()
    (out / "claims.md").unlink()
    page = build_report(tmp_path).read_text()
    assert "Paired over seeds" in page and "claims.csv" in page
    assert (out / "claims.md").read_text() == md  # the same numbers, recomputed from results.csv
    assert len(read_csv(out / "claims.csv")) == len(table)


def test_compare_sweeps_pairs_one_label_of_each_sweep_by_seed():
    # catches: pairing across sweeps by row order instead of seed, rows of other objectives mixed
    # in, or the two sides swapped (a − b must be first sweep minus second)
    first = [{"objective.name": "vae_plus_h", "model.hidden": 5, "seed": s, "mi": 2.0 + s}
             for s in (2, 0, 1)]
    first += [{"objective.name": "mim_minus_h", "model.hidden": 5, "seed": s, "mi": -9.0}
              for s in range(3)]
    second = [{"objective.name": "vae", "model.hidden": 5, "seed": s, "mi": 1.0 + s + 0.1 * s}
              for s in range(3)]
    second += [{"objective.name": "mim", "model.hidden": 5, "seed": s, "mi": 99.0}
               for s in range(3)]
    table = compare_sweeps(first, "vae_plus_h", second, "vae", by=["model.hidden"],
                           claims={"mi": "higher"})
    (row,) = table
    assert row["model.hidden"] == 5 and row["n"] == 3
    assert row["diff_mean"] == pytest.approx(np.mean([1.0, 0.9, 0.8]))
    assert row["diff_std"] == pytest.approx(0.1)  # row order would pair 4−1, 2−2.1, 3−3.2
    same = compare_sweeps(second, "vae", second, "vae", by=["model.hidden"], claims={"mi": "lower"})
    assert same[0]["diff_mean"] == 0.0 and same[0]["verdict"] == "not significant"
    with pytest.raises(DataError, match="second sweep has no runs with objective.name = 'ce'"):
        compare_sweeps(first, "vae_plus_h", second, "ce", by=["model.hidden"], claims={"mi": "higher"})
