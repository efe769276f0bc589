"""Paired comparisons of two objectives across seeds: is each of the paper's claims significant?

A sweep that trains two objectives (MIM and VAE) on the same seeds gives, per setting (the grid
values other than the seed and the objective) and per metric, *pairs* of values matched by seed.
:func:`compare_objectives` reduces them to the mean ± standard deviation of each objective, the mean
paired difference ``a − b`` (MIM − VAE) with its 95% t interval, a paired t-test (Holm-adjusted
over the settings of each metric) and (from 6 pairs on) a Wilcoxon signed-rank test, and a verdict
on the paper's claim.

The claims (:data:`PAPER_CLAIMS`, or a sweep's ``claims``) say, per metric, on which side of zero
the paper puts ``a − b``: ``"higher"`` (MIM has the higher value: MI, k-NN accuracy, and the NLL,
where VAE is better) or ``"lower"`` (MIM has the lower value: the reconstruction error). A claim
*holds* at a setting when the 95% interval lies wholly on the claimed side of zero **and** the
two-sided test's p, adjusted by Holm's step-down method over the settings of the metric (one
family per metric and table: e.g. Fig. 3's MI at its 8 widths), is below 0.05; it is *opposite*
when both say so for the other side, else *not significant* (or *too few pairs* below 2 pairs).
Across seeds the interval is the t interval (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n, the interval of the t-test
itself: at 5–10 pairs a percentile bootstrap covers only ~85–91% of the time); when every
difference is the same nonzero value the t-test is undefined and the exact sign test is used
(p = 2^(1−n): 2 or 3 equal differences are not evidence). That makes the rule non-monotone at
the edge — five equal differences do not hold (p 0.0625) while five that differ in the last
digit can (the t-test's p) — which is the t-test's own assumption of a spread showing; it
matters only for discrete metrics on very few pairs.

With one seed there are no pairs across seeds; :func:`compare_points` pairs two models over the
**test points** instead (the per-point values a run saves with ``eval.save_points``): a paired
t-test on the per-point NLL and the exact McNemar test on per-point k-NN correctness, with the
same verdict rule (there with a seeded percentile-bootstrap interval over the test points, which
number 300–10,000). That measures the test sample's noise, not the spread over training seeds.

Everything here is a pure function of result rows (float64 numpy); :func:`write_claims` writes
``claims.csv`` and ``claims.md`` next to a sweep's ``summary.csv``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ..errors import ConfigError, DataError
from .tables import atomic_write_text, write_csv

__all__ = ["CLAIM_DIRECTIONS", "COMPARE", "PAPER_CLAIMS", "adjust_verdicts", "claims_markdown",
           "compare_objectives", "compare_points", "compare_sweeps", "format_p", "holm",
           "NOT_CLAIMED", "apply_claim_exceptions", "claim_text", "paired_test", "pairs_by_seed",
           "points_markdown", "resolve_claims", "side_labels", "verdict", "write_claims"]

#: The sides a claim may put ``a − b`` on.
CLAIM_DIRECTIONS = ("higher", "lower")
#: The paper's claims about MIM − VAE (Figs. 3–5): MIM has the higher MI (by every KSG estimate:
#: raw ``mi``, standardised ``mi_standardized``, on ranks ``mi_rank``) and k-NN accuracy and the
#: lower reconstruction error; VAE has the lower (better) NLL, so MIM − VAE is positive there.
PAPER_CLAIMS: dict[str, str] = {"mi": "higher", "mi_standardized": "higher", "mi_rank": "higher",
                                "nll": "higher",
                                "recon_error": "lower", "knn_acc": "higher"}
#: The objectives compared by default: ``a − b`` = MIM − VAE.
COMPARE = ("mim", "vae")
#: The verdict of a row whose setting the paper makes no claim about (a claim exception of None).
NOT_CLAIMED = "no claim in the paper"
#: Wilcoxon's signed-rank test is reported from this many pairs on.
WILCOXON_MIN_PAIRS = 6


def resolve_claims(claims: Mapping[str, str] | None, where: str = "claims") -> dict[str, str]:
    """``claims`` checked (metric → ``"higher"``/``"lower"``), or :data:`PAPER_CLAIMS` for None."""
    claims = dict(PAPER_CLAIMS if claims is None else claims)
    for metric, side in claims.items():
        if side not in CLAIM_DIRECTIONS:
            raise ConfigError(f"{where}.{metric}: a claim is 'higher' or 'lower' (the side of "
                              f"zero the paper puts the difference on), got {side!r}")
    return claims


def _value(row: Mapping[str, Any], metric: str) -> float:
    v = row.get(metric)
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def pairs_by_seed(rows: Sequence[Mapping[str, Any]], metric: str, *, by: Sequence[str],
                  group: str = "objective.name", compare: Sequence[str] = COMPARE,
                  pair: str = "seed") -> dict[tuple, dict[str, Any]]:
    """Per setting (the values of ``by``, in first-seen order): the seeds both objectives of
    ``compare`` have a finite ``metric`` for, and their values, matched by ``pair`` (never by row
    order): ``{setting: {"seeds", "a", "b", "unpaired"}}`` (``a``, ``b`` float64 arrays;
    ``unpaired``: seeds with a value for one objective only). Rows of other objectives are ignored.
    A side of ``compare`` may be a tuple of labels (``(("mim", "amim"), "vae")``: MIM, or A-MIM
    where a setting has it, against VAE). Raises :class:`DataError` for two rows of one side,
    setting and seed (ambiguous pairs; e.g. a MIM and an A-MIM run of one seed).
    """
    a_labels, b_labels = (side_labels(c) for c in compare)
    values: dict[tuple, dict[str, dict[Any, float]]] = {}
    for r in rows:
        label = r.get(group)
        side = "a" if label in a_labels else "b" if label in b_labels else None
        if side is None:
            continue
        setting = tuple(r.get(k) for k in by)
        per = values.setdefault(setting, {"a": {}, "b": {}})[side]
        seed = r.get(pair)
        if seed in per:
            raise DataError(f"two results for {group}={label}, {pair}={seed} at "
                            f"{dict(zip(by, setting))}: cannot pair them")
        per[seed] = _value(r, metric)
    out: dict[tuple, dict[str, Any]] = {}
    for setting, per in values.items():
        a, b = per["a"], per["b"]
        fa = {s for s, v in a.items() if math.isfinite(v)}
        fb = {s for s, v in b.items() if math.isfinite(v)}
        seeds = sorted(fa & fb, key=lambda s: (str(type(s)), s))
        out[setting] = {"seeds": seeds,
                        "a": np.array([a[s] for s in seeds], dtype=np.float64),
                        "b": np.array([b[s] for s in seeds], dtype=np.float64),
                        "unpaired": len(fa ^ fb)}
    return out


def side_labels(side: Any) -> tuple[Any, ...]:
    """The ``group`` labels of one side of ``compare`` (a label, or a tuple/list of them), as
    every reader of ``compare`` (sweep spec, claims, per-image claims, report) takes them."""
    return tuple(side) if isinstance(side, (tuple, list)) else (side,)


def _mean_std(v: np.ndarray) -> tuple[float, float]:
    if len(v) == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan


def paired_test(a: Any, b: Any, *, claim: str | None = None, alpha: float = 0.05,
                interval: str = "t", resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Paired comparison of ``a`` and ``b`` (equal-length, matched arrays): ``n``, each side's
    mean and sample std (ddof 1; NaN below 2 values), ``diff_mean`` of ``d = a − b`` and its
    ``diff_std``, the ``1 − alpha`` interval ``ci_low``, ``ci_high`` of the mean difference
    (``interval="t"``: mean ± t₁₋α/₂,ₙ₋₁ · s/√n, the t-test's own interval; ``"bootstrap"``: the
    percentile bootstrap, ``resamples`` resamples of the pairs, numpy generator seeded with
    ``seed``), ``t``, ``t_p`` (two-sided paired t-test; when every difference is the same nonzero
    value t = ±inf and ``t_p`` is the exact two-sided sign test's 2^(1−n); 1 if they are all 0),
    ``wilcoxon_p`` (two-sided signed-rank test, zero differences dropped; NaN below
    :data:`WILCOXON_MIN_PAIRS` pairs, 1 if every difference is 0) and, for a ``claim``
    (``"higher"``/``"lower"``: the claimed side of zero for ``a − b``), ``verdict``: ``holds``,
    ``opposite``, ``not significant`` or ``too few pairs`` (the module's rule on this test alone;
    :func:`compare_objectives` re-judges it on Holm-adjusted p-values). A one-line
    :class:`DataError` for non-finite values."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise DataError(f"paired_test: {len(a)} and {len(b)} values cannot be paired")
    if claim is not None and claim not in CLAIM_DIRECTIONS:
        raise ConfigError(f"paired_test: claim must be 'higher' or 'lower', got {claim!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"paired_test: alpha must be in (0, 1), got {alpha}")
    if interval not in ("t", "bootstrap"):
        raise ConfigError(f"paired_test: interval must be 't' or 'bootstrap', got {interval!r}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DataError("paired_test: non-finite values cannot be compared (leave them out, as "
                        "pairs_by_seed does)")
    n = len(a)
    d = a - b
    out: dict[str, Any] = {"n": n}
    out["a_mean"], out["a_std"] = _mean_std(a)
    out["b_mean"], out["b_std"] = _mean_std(b)
    out["diff_mean"], out["diff_std"] = _mean_std(d)
    out.update(ci_low=math.nan, ci_high=math.nan, t=math.nan, t_p=math.nan, wilcoxon_p=math.nan)
    if n >= 2:
        if interval == "bootstrap":
            out["ci_low"], out["ci_high"] = _bootstrap_mean_ci(d, resamples, seed, alpha)
        else:
            half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
            out["ci_low"], out["ci_high"] = float(d.mean()) - half, float(d.mean()) + half
        out["t"], out["t_p"] = _paired_t(a, b)
        if n >= WILCOXON_MIN_PAIRS:
            if np.all(d == 0):
                out["wilcoxon_p"] = 1.0
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out["wilcoxon_p"] = float(stats.wilcoxon(d, zero_method="wilcox").pvalue)
    if claim is not None:
        out["claim"] = claim
        out["verdict"] = verdict(claim, out["t_p"], out["ci_low"], out["ci_high"], n, alpha)
    return out


def _sign_test_p(n: int) -> float:
    """The exact two-sided sign test's p for ``n`` nonzero differences all of one sign."""
    return min(1.0, 2.0 ** (1 - n))


def _paired_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``(t, p)`` of the two-sided paired t-test of ``a`` and ``b`` (2 pairs or more). When every
    difference is the same, t is 0/0 or ±inf: then t = 0 and p = 1 if they are all 0, else
    t = ±inf and p is the exact sign test's 2^(1−n)."""
    d = a - b
    if np.all(d == d[0]):
        return ((0.0, 1.0) if d[0] == 0 else
                (math.copysign(math.inf, d[0]), _sign_test_p(len(d))))
    res = stats.ttest_rel(a, b)
    return float(res.statistic), float(res.pvalue)


def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of the p-values of one family of tests (NaN entries are not
    tests: they stay NaN and do not count in the family's size). The adjusted p of the k-th
    smallest of m is max over j ≤ k of min(1, (m − j + 1)·p₍ⱼ₎); a claim judged on adjusted
    p-values at level α keeps the family's chance of any false "holds" below α."""
    values = np.asarray(p, dtype=np.float64)
    out = np.full(values.shape, math.nan)
    idx = np.flatnonzero(np.isfinite(values))
    m = len(idx)
    order = idx[np.argsort(values[idx], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * values[i]))
        out[i] = running
    return [float(v) for v in out]


def _matches(row: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    return all(row.get(k) in (v if isinstance(v, (list, tuple)) else [v]) for k, v in where.items())


def apply_claim_exceptions(table: list[dict[str, Any]],
                           exceptions: Sequence[Mapping[str, Any]] | None,
                           alpha: float = 0.05) -> list[dict[str, Any]]:
    """Settings where the paper's claim differs from the metric's: each exception
    ``{"where": {key: value or [values]}, "metric": name, "claim": "higher" | "lower" | None}``
    gives the rows of ``metric`` matching every ``where`` key (the last matching exception wins)
    that claim, re-judged by :func:`verdict`; ``None`` (the paper reports nothing there) leaves
    the numbers and gives the verdict :data:`NOT_CLAIMED`, and :func:`adjust_verdicts` leaves
    such rows out of the family. Returns ``table``, changed in place."""
    for e in exceptions or ():
        claim = e.get("claim")
        if claim is not None and claim not in CLAIM_DIRECTIONS:
            raise ConfigError(f"claim exception {dict(e)}: a claim is 'higher', 'lower' or null")
    for r in table:
        hits = [e for e in exceptions or () if e.get("metric") == r.get("metric")
                and _matches(r, e.get("where") or {})]
        if not hits:
            continue
        r["claim"] = hits[-1].get("claim")
        r["verdict"] = (NOT_CLAIMED if r["claim"] is None else
                        verdict(r["claim"], r.get("t_p", r.get("p", math.nan)), r["ci_low"],
                                r["ci_high"], r["n"], alpha))
    return table


def adjust_verdicts(table: list[dict[str, Any]], p_key: str, *, family: Sequence[str] = ("metric",),
                    alpha: float = 0.05) -> list[dict[str, Any]]:
    """Holm-adjust the ``p_key`` p-values of ``table``'s rows within each family (rows with equal
    ``family`` values: by default one metric over every setting of the table) into ``p_holm``,
    and judge each row's ``verdict`` on it (rows with a ``claim`` and a ``verdict``; the rule of
    :func:`verdict` with the row's interval). Returns ``table``, changed in place."""
    families: dict[tuple, list[int]] = {}
    for i, r in enumerate(table):
        if "claim" in r and r["claim"] is None:  # not a test of a claim (apply_claim_exceptions)
            r["p_holm"] = math.nan
            continue
        families.setdefault(tuple(r.get(k) for k in family), []).append(i)
    for rows in families.values():
        for i, q in zip(rows, holm([table[i].get(p_key, math.nan) for i in rows])):
            r = table[i]
            r["p_holm"] = q
            if "verdict" in r and r.get("claim") is not None:
                r["verdict"] = verdict(r["claim"], q, r["ci_low"], r["ci_high"], r["n"], alpha)
    return table


def verdict(claim: str, p: float, ci_low: float, ci_high: float, n: int,
            alpha: float = 0.05) -> str:
    """The verdict on a claim (the module's rule): ``holds`` when the test's two-sided ``p`` is
    below ``alpha`` and the interval [``ci_low``, ``ci_high``] of ``a − b`` lies wholly on the
    claimed side of zero, ``opposite`` when both say so for the other side, else ``not
    significant``; ``too few pairs`` below 2 pairs (a NaN p from 2 pairs on: ``not
    significant``)."""
    if n < 2 or p is None or math.isnan(p):
        return "too few pairs" if n < 2 else "not significant"
    significant = p < alpha
    above, below = ci_low > 0, ci_high < 0
    claimed, other = (above, below) if claim == "higher" else (below, above)
    return ("holds" if significant and claimed else
            "opposite" if significant and other else "not significant")


def _point_key(metric: str, points: Mapping[str, np.ndarray]) -> str | None:
    """The per-point array behind ``metric``: ``nll``; for ``knn_acc`` ``knn_correct_k<knn_k>``
    (the points' ``knn_k``), for ``knn_acc_k<k>`` ``knn_correct_k<k>``; None for other metrics."""
    if metric == "nll":
        return "nll"
    if metric == "knn_acc" and "knn_k" in points:
        return f"knn_correct_k{int(np.asarray(points['knn_k']))}"
    if metric.startswith("knn_acc_k"):
        return f"knn_correct_k{metric[len('knn_acc_k'):]}"
    return None


def _bootstrap_mean_ci(d: np.ndarray, resamples: int, seed: int, alpha: float,
                       chunk: int = 2**22) -> tuple[float, float]:
    """Percentile-bootstrap ``1 − alpha`` interval of the mean of ``d`` (``resamples`` resamples
    with replacement, numpy generator seeded with ``seed``), drawn in blocks of about ``chunk``
    indices so that memory stays bounded at 10,000 test points."""
    rng = np.random.default_rng(seed)
    n = len(d)
    rows = max(1, chunk // n)
    means = np.concatenate([d[rng.integers(0, n, size=(min(rows, resamples - i), n))].mean(axis=1)
                            for i in range(0, resamples, rows)])
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def compare_points(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], *,
                   claims: Mapping[str, str] | None = None, seed: int = 0,
                   n_boot: int = 10_000, alpha: float = 0.05) -> list[dict[str, Any]]:
    """Paired comparison of two models over the **test points** of one evaluation each
    (``a``, ``b``: the ``points`` of :func:`torchmim.evaluation.evaluate_points`, or a run's
    ``points.npz``; both evaluated on the same test points in the same order).

    One row per claimed metric the points have (``nll``; ``knn_acc`` and any ``knn_acc_k<k>``
    claimed), in the order of ``claims`` (default :data:`PAPER_CLAIMS`, whose other metrics are
    skipped): ``metric``, ``claim``, ``n`` (test points), ``a_mean``, ``b_mean``, ``diff_mean``
    (``a − b``; for k-NN the accuracy difference), the seeded percentile-bootstrap interval
    ``ci_low``, ``ci_high`` of the mean difference (``n_boot`` resamples of the test points),
    ``test`` and ``p``: for the NLL a paired t-test (``scipy.stats.ttest_rel``; identical
    differences give the sign test's p = 2^(1−n), or 1 when all are 0), for k-NN correctness the
    exact McNemar test (``scipy.stats.binomtest`` on the discordant counts ``a_only``, ``b_only``: points only ``a``,
    only ``b`` classifies correctly; p = 1 when there are none), and ``verdict`` by the rule of
    :func:`paired_test`. The noise these measure is that of the finite test sample for the two
    trained models at hand, not the spread over training seeds: with one seed they say whether a
    difference is larger than the test set can resolve, not whether it would recur on retraining.

    Raises :class:`DataError` (one line) when ``a`` and ``b`` were not measured on the same test
    points (different ``test_index``, or arrays of different lengths) or, where both carry them
    (points written before they existed do not), on different images (``x_sha256``) or with
    another NLL estimate (``nll_samples``, ``nll_points``, ``nll_precision``; points without
    ``nll_precision`` were estimated in full precision).
    """
    claims = resolve_claims(claims)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ConfigError(f"compare_points: n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"compare_points: alpha must be in (0, 1), got {alpha}")
    if "test_index" in a and "test_index" in b and not np.array_equal(
            np.asarray(a["test_index"]), np.asarray(b["test_index"])):
        raise DataError(f"compare_points: the two models were measured on different test points "
                        f"({len(a['test_index'])} and {len(b['test_index'])}, or another order)")
    a, b = dict(a), dict(b)
    if "nll_precision" in a or "nll_precision" in b:  # points written before it: full precision
        a.setdefault("nll_precision", np.asarray("full"))
        b.setdefault("nll_precision", np.asarray("full"))
    for key, what in (("x_sha256", "different test images (x_sha256 differs)"),
                      ("nll_samples", "NLLs of different importance samples per image"),
                      ("nll_points", "NLLs on different numbers of test images"),
                      ("nll_precision", "NLLs estimated in different precisions")):
        if key in a and key in b and np.asarray(a[key]).item() != np.asarray(b[key]).item():
            raise DataError(f"compare_points: the two sides hold {what}: {key} "
                            f"{np.asarray(a[key]).item()} vs {np.asarray(b[key]).item()}")
    out: list[dict[str, Any]] = []
    for metric, claim in claims.items():
        key_a, key_b = _point_key(metric, a), _point_key(metric, b)
        if key_a is None or key_a not in a or key_b not in b:
            continue
        if key_a != key_b:
            raise DataError(f"compare_points: {metric} is k-NN with k = {key_a[len('knn_correct_k'):]}"
                            f" on one side and k = {key_b[len('knn_correct_k'):]} on the other")
        va, vb = np.asarray(a[key_a]).ravel(), np.asarray(b[key_b]).ravel()
        if va.shape != vb.shape:
            raise DataError(f"compare_points: {metric} has {len(va)} test points on one side and "
                            f"{len(vb)} on the other: not the same test images")
        n = len(va)
        fa, fb = va.astype(np.float64), vb.astype(np.float64)
        if not (np.isfinite(fa).all() and np.isfinite(fb).all()):
            raise DataError(f"compare_points: {metric} has non-finite per-point values")
        d = fa - fb
        row: dict[str, Any] = {"metric": metric, "claim": claim, "n": n,
                               "a_mean": float(fa.mean()) if n else math.nan,
                               "b_mean": float(fb.mean()) if n else math.nan,
                               "diff_mean": float(d.mean()) if n else math.nan,
                               "ci_low": math.nan, "ci_high": math.nan, "p": math.nan}
        if metric == "nll":
            row["test"] = "paired t"
            if n >= 2:
                row["p"] = _paired_t(fa, fb)[1]
        else:
            ca, cb = va.astype(bool), vb.astype(bool)
            a_only, b_only = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
            row.update(test="McNemar exact", a_only=a_only, b_only=b_only)
            if n >= 2:
                row["p"] = (float(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue)
                            if a_only + b_only else 1.0)
        if n >= 2:
            row["ci_low"], row["ci_high"] = _bootstrap_mean_ci(d, int(n_boot), seed, alpha)
        row["verdict"] = verdict(claim, row["p"], row["ci_low"], row["ci_high"], n, alpha)
        out.append(row)
    return out


def compare_objectives(rows: Sequence[Mapping[str, Any]], *, by: Sequence[str],
                       claims: Mapping[str, str] | None = None, group: str = "objective.name",
                       compare: Sequence[str] = COMPARE, pair: str = "seed", alpha: float = 0.05,
                       resamples: int = 10_000, seed: int = 0,
                       claim_exceptions: Sequence[Mapping[str, Any]] | None = None,
                       ) -> list[dict[str, Any]]:
    """One row per (setting, claimed metric): the setting's ``by`` values, ``metric``, ``claim``,
    ``unpaired`` and the fields of :func:`paired_test` on the seed-matched pairs of
    ``compare[0] − compare[1]`` (a side may be a tuple of labels, :func:`pairs_by_seed`), with
    ``p_holm``: ``t_p`` Holm-adjusted over the settings of the metric (:func:`adjust_verdicts`),
    on which the ``verdict`` is judged; ``claim_exceptions``: settings where the paper claims
    otherwise or nothing (:func:`apply_claim_exceptions`). Metrics no row has are skipped;
    settings in first-seen order, metrics in the order of ``claims`` (default
    :data:`PAPER_CLAIMS`)."""
    claims = resolve_claims(claims)
    if len(compare) != 2 or set(side_labels(compare[0])) & set(side_labels(compare[1])):
        raise ConfigError(f"compare must name two different objectives, got {list(compare)}")
    out: list[dict[str, Any]] = []
    metrics = [m for m in claims if any(m in r for r in rows)]
    per_metric = {m: pairs_by_seed(rows, m, by=by, group=group, compare=compare, pair=pair)
                  for m in metrics}
    settings = list(dict.fromkeys(s for m in metrics for s in per_metric[m]))
    for setting in settings:
        for m in metrics:
            p = per_metric[m].get(setting)
            if p is None:
                continue
            test = paired_test(p["a"], p["b"], claim=claims[m], alpha=alpha,
                               resamples=resamples, seed=seed)
            out.append({**dict(zip(by, setting)), "metric": m, "claim": claims[m],
                        "unpaired": p["unpaired"], **test})
    apply_claim_exceptions(out, claim_exceptions, alpha)
    return adjust_verdicts(out, "t_p", alpha=alpha)


def compare_sweeps(rows_a: Sequence[Mapping[str, Any]], label_a: str,
                   rows_b: Sequence[Mapping[str, Any]], label_b: str, *, by: Sequence[str],
                   claims: Mapping[str, str], group: str = "objective.name",
                   **options: Any) -> list[dict[str, Any]]:
    """:func:`compare_objectives` across two sweeps: the runs of ``label_a`` (a ``group`` value)
    in ``rows_a`` against those of ``label_b`` in ``rows_b``, paired by seed within each setting
    of ``by`` — e.g. Appendix D.1's VAE + H against Fig. 3's VAE, which share the grid, the data
    and (per seed) the initial weights. The label may be the same on both sides (one objective
    under two protocols). ``options``: those of :func:`compare_objectives`."""
    tagged = [{**r, "_side": "a"} for r in rows_a if r.get(group) == label_a]
    tagged += [{**r, "_side": "b"} for r in rows_b if r.get(group) == label_b]
    for rows, label, side in ((rows_a, label_a, "first"), (rows_b, label_b, "second")):
        if not any(r.get(group) == label for r in rows):
            raise DataError(f"compare_sweeps: the {side} sweep has no runs with {group} = {label!r}")
    return compare_objectives(tagged, by=by, claims=resolve_claims(claims), group="_side",
                              compare=("a", "b"), **options)


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3) else f"{v:.{digits}f}"
    return str(v)


def format_p(v: Any) -> str:
    """A p-value for a table: two significant digits, ``<1e-4`` below that, ``–`` for NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return "<1e-4" if v < 1e-4 else f"{v:.2g}"


def claim_text(claim: str | None, a: str, b: str) -> str:
    """A claim as a table shows it (``MIM > VAE``; ``–`` for no claim)."""
    return "–" if claim is None else f"{a} {'>' if claim == 'higher' else '<'} {b}"


def claims_markdown(table: Sequence[Mapping[str, Any]], by: Sequence[str],
                    compare: Sequence[str] = COMPARE) -> str:
    """A Markdown table of :func:`compare_objectives`' rows: per setting and metric the pairs, both
    means ± std, the difference with its 95% interval, the t-test and Wilcoxon p and the verdict."""
    # display names (MIM, VAE + H); variant labels as given
    from ..figures.style import objective_label

    a, b = ("/".join(objective_label(c) for c in side_labels(side)) for side in compare)
    b_term = f"({b})" if " " in b or "/" in b else b  # VAE + H − (MIM − H)
    head = [*by, "metric", "claim", "pairs", f"{a} mean ± std", f"{b} mean ± std",
            f"{a} − {b_term} [95% t interval]", "t-test p", "Holm-adjusted p", "Wilcoxon p",
            "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        sides = [f"{_num(r[f'{s}_mean'])} ± {_num(r[f'{s}_std'])}" for s in ("a", "b")]
        pairs = f"{r['n']}" + (f" ({r['unpaired']} unpaired)" if r.get("unpaired") else "")
        cells = [*(str(r.get(k)) for k in by), str(r["metric"]),
                 claim_text(r["claim"], a, b), pairs,
                 *sides, f"{_num(r['diff_mean'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
                 format_p(r["t_p"]), format_p(r.get("p_holm")), format_p(r["wilcoxon_p"]),
                 str(r.get("verdict", ""))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def points_markdown(table: Sequence[Mapping[str, Any]], by: Sequence[str],
                    compare: Sequence[str] = COMPARE) -> str:
    """A Markdown table of :func:`compare_points`' rows (each with its setting's ``by`` values):
    per setting and metric the test points, both means, the difference with its 95% bootstrap
    interval over test points, the test and its p, and the verdict. A row's sides are named by
    its ``a`` and ``b`` objectives where it has them (A-MIM for a row with ``a`` = ``amim``),
    else by ``compare``; a header names every side ``a`` of the table (``MIM/A-MIM mean``)."""
    from ..figures.style import objective_label

    def sides(r: Mapping[str, Any]) -> tuple[str, str]:
        return objective_label(r.get("a") or compare[0]), objective_label(r.get("b") or compare[1])

    a = "/".join(dict.fromkeys(sides(r)[0] for r in table)) or objective_label(compare[0])
    b = "/".join(dict.fromkeys(sides(r)[1] for r in table)) or objective_label(compare[1])
    b_term = f"({b})" if " " in b or "/" in b else b
    head = [*by, "metric", "claim", "test points", f"{a} mean", f"{b} mean",
            f"{a} − {b_term} [95% CI]", "test", "p", "Holm-adjusted p", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        test = str(r["test"])
        if "a_only" in r:
            test += f" ({r['a_only']} vs {r['b_only']} discordant)"
        ra, rb = sides(r)
        cells = [*(str(r.get(k)) for k in by), str(r["metric"]),
                 claim_text(r["claim"], ra, rb), str(r["n"]),
                 _num(r["a_mean"]), _num(r["b_mean"]),
                 f"{_num(r['diff_mean'])} [{_num(r['ci_low'])}, {_num(r['ci_high'])}]",
                 test, format_p(r["p"]), format_p(r.get("p_holm")), str(r.get("verdict", ""))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_claims(rows: Sequence[Mapping[str, Any]], spec: Any, out_dir: str | Path,
                 ) -> list[dict[str, Any]]:
    """Write ``claims.csv`` and ``claims.md`` for a sweep (``spec``: a
    :class:`~torchmim.experiments.spec.SweepSpec` or its dict, as in ``sweep.json``) and return the
    table, or write nothing and return ``[]`` when the sweep has no ``seed`` grid, its ``group``
    does not hold both objectives of its ``compare``, or its ``claims`` are empty (then a stale
    ``claims.csv``/``claims.md`` of an earlier run is removed)."""
    get = spec.get if isinstance(spec, Mapping) else (lambda k, d=None: getattr(spec, k, d))
    grid = get("grid") or {}
    group = get("group") or "objective.name"
    compare = tuple(get("compare") or COMPARE)  # a side may be a list (side_labels)
    claims = resolve_claims(get("claims"), where=f"sweep {get('name')}: claims")
    labels = {str(v.get("label")) if isinstance(v, Mapping) else v for v in grid.get(group, [])}
    out = Path(out_dir)
    table: list[dict[str, Any]] = []
    by = [k for k in grid if k not in ("seed", group)]
    if "seed" in grid and claims and all(set(side_labels(c)) & labels for c in compare):
        table = compare_objectives(rows, by=by, claims=claims, group=group, compare=compare,
                                   claim_exceptions=get("claim_exceptions"))
    if not table:
        for name in ("claims.csv", "claims.md"):
            (out / name).unlink(missing_ok=True)
        return []
    write_csv(out / "claims.csv", table, first=[*by, "metric", "claim"])
    atomic_write_text(out / "claims.md", claims_markdown(table, by, compare))
    return table
