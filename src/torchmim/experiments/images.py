"""The paper's image experiments (Section 6.3–6.4, Tables 1 and 2) as one sweep, ``image-tables``.

Grid: {Fashion-MNIST, MNIST, Omniglot} × {convHVAE, PixelHVAE} × {standard, VampPrior} prior ×
{MIM (A-MIM for PixelHVAE, Section 5.3), VAE} × seeds; both tables come from the same runs (Table 1:
test NLL, Table 2: 5-NN accuracy). Every cell saves its per-test-image values (``points.npz``), and
``claims_test_points.md`` compares MIM (A-MIM) with VAE image by image — the statistics available
with one seed (test-sample noise, not seed noise; :func:`test_point_claims`).

The default is the full-scale protocol of the reference set-up (``specs/image-architectures.md``):
Adam with per-parameter L2-normalised gradients, learning rate 5e-4, batch 100, β warm-up over 100
epochs (for MIM and A-MIM also of the top-level prior, log p(z1|z2) + β log p(z2), the models'
``prior_warmup: top``), early stopping with patience 50 at β = 1, test NLL by importance sampling
with S = 5000, k-NN for k ∈ {1, 3, 5, 10} fit on the whole training split; 10 seeds. That is GPU work. The ``gpu`` preset trains one data set's cells
at full size side by side on one GPU, each for a fixed wall-clock (``train.max_seconds``, default 5
minutes: 5–15 epochs on an H100) — about 9 minutes in all. The ``cpu`` preset is what a 2-core CPU
finishes in about an hour for one data set (smaller training set, few epochs, fewer importance
samples and test points; one seed) — its numbers show the orderings, not the paper's values. The
``quick`` preset runs in minutes (tests, smoke checks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from .aggregate import aggregate
from .figures import SWEEP_FIGURES, FigureSkipped, _load, select_cells
from .spec import Cell, FigureSpec, SweepSpec
from .statistics import (
    NOT_CLAIMED,
    adjust_verdicts,
    apply_claim_exceptions,
    compare_points,
    resolve_claims,
    side_labels,
)

__all__ = ["PAPER_TABLE1", "PAPER_TABLE2", "TABLE_CLAIMS", "image_tables", "paper_claim_exceptions",
           "test_point_claims"]

# n_train_eval None: the k-NN of Table 2 is fit on the whole training split, as the reference
# (eval.knn_train_points defaults to all of it); the cpu and quick presets set smaller splits.
DATA = [
    {"label": "Fashion-MNIST", "set": {"data": {"name": "fashion-mnist", "n_train_eval": None}}},
    {"label": "MNIST", "set": {"data": {"name": "mnist", "n_train_eval": None}}},
    {"label": "Omniglot", "set": {"data": {"name": "omniglot", "n_train_eval": None}}},
]
ARCHS = [
    {"label": "convHVAE (S)", "set": {"model": {"name": "convhvae", "prior": "standard"}}},
    {"label": "convHVAE (VP)", "set": {"model": {"name": "convhvae", "prior": "vampprior"}}},
    {"label": "PixelHVAE (S)", "set": {"model": {"name": "pixelhvae", "prior": "standard"}}},
    {"label": "PixelHVAE (VP)", "set": {"model": {"name": "pixelhvae", "prior": "vampprior"}}},
]
CONV = ["convHVAE (S)", "convHVAE (VP)"]
PIXEL = ["PixelHVAE (S)", "PixelHVAE (VP)"]

# Table 1 of the paper: test NLL (nats), mean ± std over 10 trials; (MIM or A-MIM, VAE) per column.
PAPER_TABLE1: dict[str, dict[str, tuple[tuple[float, float], tuple[float, float]]]] = {
    "Fashion-MNIST": {"convHVAE (S)": ((272.14, 0.64), (225.40, 0.05)),
                      "convHVAE (VP)": ((227.61, 0.34), (224.77, 0.04)),
                      "PixelHVAE (S)": ((243.95, 0.47), (224.65, 0.07)),
                      "PixelHVAE (VP)": ((224.94, 0.34), (224.02, 0.08))},
    "MNIST": {"convHVAE (S)": ((126.85, 0.56), (80.50, 0.05)),
              "convHVAE (VP)": ((82.73, 0.08), (79.66, 0.06)),
              "PixelHVAE (S)": ((114.96, 0.35), (79.04, 0.05)),
              "PixelHVAE (VP)": ((79.04, 0.08), (78.60, 0.04))},
    "Omniglot": {"convHVAE (S)": ((141.81, 0.32), (97.94, 0.29)),
                 "convHVAE (VP)": ((104.10, 2.17), (97.52, 0.16)),
                 "PixelHVAE (S)": ((126.12, 0.38), (91.06, 0.14)),
                 "PixelHVAE (VP)": ((91.82, 0.20), (90.74, 0.15))},
}
# Table 2 of the paper: 5-NN test accuracy (std < 0.01); (MIM or A-MIM, VAE) per column.
PAPER_TABLE2: dict[str, dict[str, tuple[float, float]]] = {
    "Fashion-MNIST": {"convHVAE (S)": (0.83, 0.76), "convHVAE (VP)": (0.81, 0.78),
                      "PixelHVAE (S)": (0.71, 0.76), "PixelHVAE (VP)": (0.79, 0.77)},
    "MNIST": {"convHVAE (S)": (0.97, 0.92), "convHVAE (VP)": (0.97, 0.92),
              "PixelHVAE (S)": (0.95, 0.86), "PixelHVAE (VP)": (0.96, 0.81)},
}


#: The tables' claims about MIM (A-MIM) − VAE where the paper says nothing else: VAE's NLL is
#: lower (Table 1), MIM's 5-NN accuracy higher (Table 2); the settings where the paper shows the
#: other side or no value are :func:`paper_claim_exceptions`.
TABLE_CLAIMS = {"nll": "higher", "knn_acc": "higher"}


def paper_claim_exceptions() -> list[dict[str, Any]]:
    """The settings where Tables 1–2 do not say what :data:`TABLE_CLAIMS` says, read off
    :data:`PAPER_TABLE1`/:data:`PAPER_TABLE2`: the side of MIM − VAE the paper's means put a
    setting on where it is not the claim's (Fashion-MNIST PixelHVAE (S): the VAE's 5-NN is the
    higher), and no claim where the paper reports no value (Omniglot's k-NN)."""
    out: list[dict[str, Any]] = []
    for metric, table in (("nll", PAPER_TABLE1), ("knn_acc", PAPER_TABLE2)):
        for data in (d["label"] for d in DATA):
            for arch in (a["label"] for a in ARCHS):
                pair = table.get(data, {}).get(arch)
                if pair is None:
                    claim = None
                else:
                    a, b = (v[0] if isinstance(v, tuple) else v for v in pair)
                    claim = "higher" if a > b else "lower" if a < b else None
                if claim != TABLE_CLAIMS[metric]:
                    out.append({"where": {"data": data, "model": arch}, "metric": metric,
                                "claim": claim})
    return out


def image_tables() -> SweepSpec:
    # measured (docs/benchmarks.md): convHVAE MIM trains at 50 images/s on 2 threads, VAE at 120;
    # 8 cells × 6 epochs of 4,000 images then fit in about an hour with 2 workers.
    fmnist_cpu = {"n_train": 4000, "n_val": 1000, "n_test": 1000}  # k-NN: all 4000 (DATA)
    return SweepSpec(
        name="image-tables",
        description="Tables 1 and 2: {Fashion-MNIST, MNIST, Omniglot} × {convHVAE, PixelHVAE} × "
                    "{standard, VampPrior} × {MIM (A-MIM for PixelHVAE), VAE}; dynamically binarised "
                    "images, two-level latents z = [z1, z2] ∈ R^80, the reference set-up.",
        paper="Table 1: VAE has the better NLL, by a large margin with the standard prior and a "
              "small one with the VampPrior. Table 2: MIM's 5-NN accuracy is higher in all cases "
              "but PixelHVAE (S) on Fashion-MNIST.",
        base={"train": {"lr": 5e-4, "batch_size": 100, "normalize_grads": True,
                        "lr_schedule": "constant", "warmup_epochs": 100, "patience": 50,
                        "epochs": 2000},
              "eval": {"mi": False, "nll_samples": 5000, "extra_knn_k": [1, 3, 10],
                       "max_points": 10000, "recon_points": 1000, "nll_batch_size": 20,
                       "nll_max_pairs": 2000, "save_points": True}},
        grid={"data": DATA, "model": ARCHS, "objective.name": ["mim", "amim", "vae"],
              "seed": list(range(10))},
        exclude=[{"model": CONV, "objective.name": "amim"},
                 {"model": PIXEL, "objective.name": "mim"}],
        presets={
            "cpu": {"description": "one data set (Fashion-MNIST unless --grid data=...) in about "
                                   "an hour on 2 CPU cores",
                    "grid": {"data": ["Fashion-MNIST"], "seed": [0]},
                    "set": {**{f"data.{k}": v for k, v in fmnist_cpu.items()},
                            "train.epochs": 6, "train.warmup_epochs": 3, "train.patience": 2,
                            "eval.nll_samples": 100, "eval.nll_points": 300,
                            "eval.recon_points": 200, "eval.max_points": 1000}},
            "gpu": {"description": "one data set (Fashion-MNIST unless --grid data=...) at full size "
                                   "on one GPU: all cells at once (--workers 8), each trained "
                                   "for train.max_seconds of wall-clock, then evaluated",
                    "grid": {"data": ["Fashion-MNIST"], "seed": [0]},
                    "set": {"train.device": "cuda", "train.max_seconds": 300,
                            "train.warmup_epochs": 3, "train.patience": 10,
                            "eval.nll_samples": 1000, "eval.nll_points": 2000,
                            "eval.nll_max_pairs": 20000, "eval.max_points": 10000,
                            "eval.recon_points": 1000}},
            "quick": {"description": "minutes: tiny data, 2 epochs",
                      "grid": {"data": ["Fashion-MNIST"], "seed": [0]},
                      "set": {"data.n_train": 300, "data.n_val": 100, "data.n_test": 100,
                              "train.epochs": 2,
                              "train.warmup_epochs": 1, "model.num_pseudo_inputs": 20,
                              "eval.nll_samples": 5, "eval.nll_points": 20,
                              "eval.recon_points": 20,
                              "eval.max_points": 100}},
        },
        group="objective.name",
        compare=[["mim", "amim"], "vae"],  # A-MIM is PixelHVAE's MIM (Section 5.3)
        claims=dict(TABLE_CLAIMS),
        claim_exceptions=paper_claim_exceptions(),
        metrics=["nll", "knn_acc", "knn_acc_k1", "knn_acc_k3", "knn_acc_k10", "recon_rmse"],
        figures=[
            FigureSpec("paper_table", "table1.md", {"metric": "nll", "table": 1}),
            FigureSpec("paper_table", "table2.md", {"metric": "knn_acc", "table": 2}),
            FigureSpec("test_point_claims", "claims_test_points.md",
                       {"csv": "claims_test_points.csv"}),
            FigureSpec("image_rows", "reconstructions_convhvae_vp.png",
                       {"select": {"model": "convHVAE (VP)", "seed": 0}}),
            FigureSpec("image_rows", "reconstructions_convhvae_s.png",
                       {"select": {"model": "convHVAE (S)", "seed": 0}}),
            FigureSpec("tsne", "tsne_convhvae_s.png", {"select": {"model": "convHVAE (S)",
                                                                  "seed": 0}}),
            FigureSpec("tsne", "tsne_convhvae_vp.png", {"select": {"model": "convHVAE (VP)",
                                                                   "seed": 0}}),
        ],
    )


def _fmt(mean: float, std: float, n: int, digits: int) -> str:
    if mean != mean:  # NaN
        return "–"
    if n == 1:  # one seed has no spread to report; "± 0.00" would claim one
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={n})"


@SWEEP_FIGURES.register("paper_table")
def paper_table(spec: SweepSpec, out: Path, rows: Sequence[dict[str, Any]], cells: Sequence[Cell],
                metric: str = "nll", table: int = 1) -> str:
    """The paper's Table 1 (NLL) or 2 (5-NN accuracy) as Markdown, ours next to the paper's."""
    summary = aggregate(rows, ["data", "model", "objective.name"], [metric])
    ours = {(e["data"], e["model"], e["objective.name"]): e for e in summary}
    digits = 2 if metric == "nll" else 3
    archs = [a["label"] for a in ARCHS]
    head = "| data set | " + " | ".join(
        f"{a} {'A-MIM' if a in PIXEL else 'MIM'} | {a} VAE" for a in archs) + " |"
    lines = [f"Table {table} — {'test NLL (nats, lower is better)' if metric == 'nll' else '5-NN test accuracy'}: "
             "this run (mean ± std over seeds, the mean alone for one seed) and the paper.", "", head,
             "|---|" + "---:|" * (2 * len(archs))]
    datasets = sorted({r["data"] for r in rows}, key=[d["label"] for d in DATA].index)
    paper = PAPER_TABLE1 if table == 1 else PAPER_TABLE2
    for data in datasets:
        ours_cells, paper_cells = [], []
        for arch in archs:
            for obj in (("amim" if arch in PIXEL else "mim"), "vae"):
                e = ours.get((data, arch, obj))
                ours_cells.append(_fmt(e[f"{metric}_mean"], e[f"{metric}_std"], e["n"], digits)
                                  if e else "–")
            ref = paper.get(data, {}).get(arch)
            if ref is None:
                paper_cells += ["–", "–"]
            elif table == 1:
                paper_cells += [f"{m:.2f} ± {s:.2f}" for m, s in ref]
            else:
                paper_cells += [f"{v:.2f}" for v in ref]
        lines.append(f"| {data} (torchmim) | " + " | ".join(ours_cells) + " |")
        lines.append(f"| {data} (paper) | " + " | ".join(paper_cells) + " |")
    def per_data(key: str) -> str:
        # one value for all rows, else each data set's (e.g. 4000 for MNIST, 3000 for Omniglot);
        # a missing, empty or NaN value (a CSV of older runs) is skipped, "–" when none is left
        values = {d: sorted({v for r in rows if r["data"] == d
                             if (v := _count(r.get(key))) is not None}) for d in datasets}
        if len({tuple(v) for v in values.values()}) <= 1:
            return "/".join(str(v) for v in next(iter(values.values()), [])) or "–"
        return ", ".join(f"{'/'.join(str(x) for x in v) or '–'} ({d})" for d, v in values.items())

    lines += ["", f"torchmim: NLL by importance sampling with S = {per_data('nll_samples')} on "
                  f"{per_data('nll_points')} test images; k-NN fit on "
                  f"{per_data('n_train')} training codes (sampled z ∼ q(z|x), the whole "
                  "training split the run had unless a preset set eval.knn_train_points), scored "
                  f"on {per_data('n_test')} test codes. Paper: 10 trials, S = 5000, full test "
                  "sets, k-NN fit on the whole training split (50,000 images for MNIST and "
                  "Fashion-MNIST).", ""]
    return "\n".join(lines)


def _count(value: Any) -> int | None:
    """A count of a results row as an int; None for a missing, empty, NaN or non-number value."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) else None


@SWEEP_FIGURES.register("test_point_claims")
def test_point_claims(spec: SweepSpec, out: Path, rows: Sequence[dict[str, Any]],
                      cells: Sequence[Cell], csv: str | None = "claims_test_points.csv",
                      claims: dict[str, str] | None = None, n_boot: int = 10_000,
                      seed: int = 0) -> str:
    """The tables' claims paired over **test images** (Markdown; with ``csv`` also that CSV,
    written atomically beside it): for every setting (the grid values but the objective) with a
    finished MIM (A-MIM for PixelHVAE) cell and a finished VAE cell that both saved their test
    points (``points.npz``, ``eval.save_points``), one row per metric (NLL: paired t-test; 5-NN
    accuracy: exact McNemar test) by :func:`~torchmim.experiments.statistics.compare_points`,
    under the sweep's ``claims`` and ``claim_exceptions`` (``claims`` overrides the former: the
    paper's side per setting, no claim where it reports nothing), with the p-values
    Holm-adjusted per metric over the settings and the verdicts judged on them. A row whose
    points do not both carry the test images' sha256 (points written before it existed) says
    ``images_verified: False``. Settings where a side is missing, has no ``points.npz`` or the
    two cannot be paired are listed as skipped. The noise measured is the test sample's for the
    models trained, not the spread over training seeds. Each row names its side ``a`` (``mim``
    or ``amim``); a one-line :class:`ConfigError` when a setting has both (which to compare
    would be ambiguous)."""
    from ..evaluation import POINTS_FILE, read_points
    from ..figures.style import objective_label
    from .statistics import points_markdown
    from .tables import write_csv

    group = spec.group
    a_side, b_name = spec.compare
    # a list names its sides; a single name also takes its A- variant (A-MIM: Section 5.3)
    a_sides = set(side_labels(a_side)) if isinstance(a_side, list) else {a_side, f"a{a_side}"}
    a_name = side_labels(a_side)[0]
    claims = resolve_claims(spec.claims if claims is None else claims)
    done = {r["cell"] for r in rows}
    by = [k for k in spec.grid if k != group]
    settings: dict[tuple, dict[str, Cell]] = {}
    a_of: dict[tuple, str] = {}  # setting → its side "a" objective, over all cells, done or not
    for cell in cells:
        side = cell.params.get(group)
        setting = tuple(cell.params.get(k) for k in by)
        if side in a_sides:
            if a_of.setdefault(setting, side) != side:
                where = ", ".join(f"{k} {v}" for k, v in zip(by, setting))
                raise ConfigError(
                    f"sweep {spec.name}: setting {where} has both a {a_of[setting]} and a {side} "
                    f"cell; test_point_claims compares one of them with {b_name} (exclude the "
                    "other)")
        key = "a" if side in a_sides else "b" if side == b_name else None
        if key is not None and cell.id in done:
            settings.setdefault(setting, {})[key] = cell
    table: list[dict[str, Any]] = []
    skipped: list[str] = []
    for setting, pair in settings.items():
        where = ", ".join(f"{k} {v}" for k, v in zip(by, setting))
        missing = [c.id for c in pair.values() if not (out / "cells" / c.id / POINTS_FILE).is_file()]
        if len(pair) < 2 or missing:
            lacking = (objective_label(b_name) if "a" in pair
                       else objective_label(a_of.get(setting, a_name)))
            why = (f"no finished {lacking} cell" if len(pair) < 2
                   else f"no {POINTS_FILE} in {', '.join(missing)}")
            skipped.append(f"{where}: {why}")
            continue
        a_points = read_points(out / "cells" / pair["a"].id / POINTS_FILE)
        b_points = read_points(out / "cells" / pair["b"].id / POINTS_FILE)
        try:
            compared = compare_points(a_points, b_points, claims=claims, seed=seed,
                                      n_boot=n_boot)
        except DataError as e:  # e.g. other test images: this setting only, said below
            skipped.append(f"{where}: {e}")
            continue
        verified = "x_sha256" in a_points and "x_sha256" in b_points
        for row in compared:
            table.append({**dict(zip(by, setting)), "a": pair["a"].params.get(group),
                          "b": pair["b"].params.get(group), **row,
                          "images_verified": verified})
    if not table:
        raise FigureSkipped(f"sweep {spec.name}: no finished cell pair with both objectives' "
                            f"test points ({POINTS_FILE}); " + ("; ".join(skipped) or "none"))
    apply_claim_exceptions(table, spec.claim_exceptions)
    adjust_verdicts(table, "p")
    if csv:
        write_csv(out / csv, table, first=[*by, "metric", "claim"])
    claimed = [r for r in table if r["verdict"] != NOT_CLAIMED]
    n_holds = sum(r["verdict"] == "holds" for r in claimed)
    a_labels = " or ".join(dict.fromkeys(objective_label(r["a"]) for r in table))
    lines = [f"Claims paired over test images: {n_holds} of {len(claimed)} hold ({a_labels} "
             f"against {objective_label(b_name)}; NLL: paired t-test on the per-image NLL, 5-NN "
             "accuracy: exact McNemar test on the images one model classifies correctly and the "
             "other not; 95% percentile-bootstrap interval of the mean difference over test "
             "images; a claim holds when its p, Holm-adjusted per metric over the settings, is "
             "below 0.05 and the interval lies on the claimed side of zero; the claim per setting "
             "is the side the paper's table puts it on, none where the paper has no value).", "",
             "These compare the two trained models on the same test images: the noise they "
             "measure is the test sample's, not the spread over training seeds — with one seed "
             "they say whether a difference is larger than the test set can resolve, not whether "
             "it would recur on retraining.", "",
             points_markdown(table, by, (a_name, b_name))]
    unverified = sorted({", ".join(str(r.get(k)) for k in by) for r in table
                         if not r["images_verified"]})
    if unverified:
        lines += ["Not verified to be the same test images (points.npz written before the "
                  "images' sha256 was saved; paired by count and order only): "
                  + "; ".join(unverified) + ".", ""]
    if skipped:
        lines += ["Skipped (no pair of test points):", "", *(f"- {s}" for s in skipped), ""]
    return "\n".join(lines)


def _pairs(out: Path, spec: SweepSpec, rows: Sequence[dict[str, Any]], cells: Sequence[Cell],
           select: dict[str, Any]) -> list[tuple[str, Cell]]:
    from ..figures.style import objective_label

    done = {r["cell"] for r in rows}
    chosen = [c for c in select_cells(cells, select) if c.id in done]
    if not chosen:
        raise FigureSkipped(f"sweep {spec.name}: no finished cell matches {select}")
    data = chosen[0].params.get("data")
    chosen = [c for c in chosen if c.params.get("data") == data]
    order = {"vae": 0, "mim": 1, "amim": 1}
    chosen.sort(key=lambda c: order.get(c.params.get("objective.name"), 2))
    return [(objective_label(c.params.get("objective.name", "")), c) for c in chosen]


@SWEEP_FIGURES.register("image_rows")
def image_rows(spec: SweepSpec, out: Path, rows: Sequence[dict[str, Any]], cells: Sequence[Cell],
               select: dict[str, Any] | None = None, n: int = 16, seed: int = 0):
    """Test images, each objective's reconstruction (decoder means) and random samples (Fig. 6, 17)."""
    import torch

    from ..figures.images import plot_image_rows

    pairs = _pairs(out, spec, rows, cells, select or {})
    first = pairs[0][1]
    x = first.config.data.load(seed=first.config.seed).test[0][:n]
    strips = [("test data", x)]
    samples = []
    for label, cell in pairs:
        model = _load(out, cell).eval()
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(seed)
            strips.append((f"{label} recon.", model.reconstruct(x, sample=False)))
            samples.append((f"{label} samples", model.sample(n, mean=True)))
    title = f"{first.params.get('data', '')}, {first.params.get('model', '')}"
    return plot_image_rows(strips + samples, nrow=n, title=title)


@SWEEP_FIGURES.register("tsne")
def tsne(spec: SweepSpec, out: Path, rows: Sequence[dict[str, Any]], cells: Sequence[Cell],
         select: dict[str, Any] | None = None, n: int = 2000):
    """t-SNE of the test codes z = [z1, z2] (posterior means), coloured by class (Fig. 7–10)."""
    from ..data.images import FASHION_MNIST_CLASSES, MNIST_CLASSES
    from ..figures.images import plot_tsne
    from ..metrics import embed

    pairs = _pairs(out, spec, rows, cells, select or {})
    first = pairs[0][1]
    x, y = first.config.data.load(seed=first.config.seed).test
    x, y = x[:n], y[:n]
    names = {"Fashion-MNIST": FASHION_MNIST_CLASSES, "MNIST": MNIST_CLASSES}.get(
        first.params.get("data"))
    panels = [(f"{label}, {first.params.get('model', '')}", embed(_load(out, cell), x), y)
              for label, cell in pairs]
    return plot_tsne(panels, class_names=names)
