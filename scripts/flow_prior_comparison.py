"""What a normalizing-flow prior changes: ``prior: normal`` vs ``prior: flow`` for MIM and VAE.

Two parts, each a list of cells trained with :func:`torchmim.run` (one process, one thread):

* ``toy``  — the paper's 2D mixture (``mlp``, ``gmm2d``) with the protocol of ``torchmim sweep fig3
  --quick`` (20 epochs of 4,000 points, β warm-up over 3 epochs, MI/NLL/5-NN on 4,000 test points,
  NLL with S = 100), hidden widths 50 and 500, seeds 0–2;
* ``conv`` — ``convhvae`` on MNIST at CPU scale (2,000 training images of the 5k MNIST subset in
  /work/shared/data/mnist, 4 epochs, the image-tables ``cpu`` preset's optimiser, NLL with S = 100 on
  300 test images, 5-NN fit on 1,000 training codes), seed 0.

``report`` writes ``results/flow_prior/flow_prior.csv`` (one row per cell), prints a Markdown table
(mean ± std over seeds) and draws ``docs/flow/flow_prior.png`` (toy left, convHVAE right).

Resumable: a finished cell leaves ``results/flow_prior/<cell>/cell.json`` and is skipped; an
interrupted one resumes from its checkpoint. Usage (from the repository root)::

    nice .venv/bin/python scripts/flow_prior_comparison.py toy
    nice .venv/bin/python scripts/flow_prior_comparison.py conv
    .venv/bin/python scripts/flow_prior_comparison.py report
    .venv/bin/python scripts/flow_prior_comparison.py bench   # the timings in flow.py's docstring
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "flow_prior"
FIGURE = ROOT / "docs" / "flow" / "flow_prior.png"
MNIST = Path("/work/shared/data/mnist")

# (name, prior, latent anchor P(z); None: P(z) = p(z), the model's default). "gaussian" (a
# learned diagonal Gaussian p(z), MIM only) asks whether what MIM does with a learned, unanchored
# flow prior is the flow's doing or any learned p(z)'s.
VARIANTS = (("normal", "normal", None), ("flow", "flow", None), ("flow-anchored", "flow", "normal"),
            ("gaussian", "gaussian", None))
OBJECTIVES = ("mim", "vae")
WIDTHS = (50, 500)
SEEDS = (0, 1, 2)
# the flow's defaults (FlowPrior): NSF, spline coupling (passes 2), 3 transforms, hidden (64, 64)
FLOW_OPTIONS: dict = {}


def toy_cells() -> dict[str, dict]:
    cells = {}
    for width in WIDTHS:
        for seed in SEEDS:
            for variant, prior, anchor in VARIANTS:
                for obj in OBJECTIVES:
                    if obj == "vae" and anchor is not None:
                        continue  # the VAE never samples P(z): the same run as "flow"
                    if variant == "gaussian" and obj == "vae":
                        continue
                    cells[f"toy-h{width}-{variant}-{obj}-s{seed}"] = {
                        "model": {"name": "mlp", "x_dim": 2, "z_dim": 2, "hidden": width,
                                  "activation": "tanh", "prior": prior,
                                  "prior_options": FLOW_OPTIONS if prior == "flow" else {},
                                  "latent_anchor": anchor},
                        "objective": {"name": obj},
                        "data": {"name": "gmm2d", "n_train": 4000, "n_val": 2000, "n_test": 4000},
                        "train": {"epochs": 20, "warmup_epochs": 3},
                        "eval": {"max_points": 4000, "nll_samples": 100},
                        "seed": seed,
                    }
    return cells


def conv_cells() -> dict[str, dict]:
    cells = {}
    # as on the toy: the flow with P(z) = p(z) (the paper's default for image models) and with a
    # fixed N(0, I) anchor over the whole z = [z1, z2] (``latent_anchor: normal``, MIM only)
    for variant, prior, anchor in (("normal", "normal", None), ("flow", "flow", None),
                                   ("flow-anchored", "flow", "normal")):
        for obj in OBJECTIVES:
            if obj == "vae" and anchor is not None:
                continue
            cells[f"conv-{variant}-{obj}-s0"] = {
                "model": {"name": "convhvae", "prior": prior,
                          "prior_options": FLOW_OPTIONS if prior == "flow" else {},
                          "latent_anchor": anchor},
                "objective": {"name": obj},
                "data": {"name": "mnist", "root": str(MNIST),
                         "train_images": "train5k-images-idx3-ubyte.gz",
                         "train_labels": "train5k-labels-idx1-ubyte.gz",
                         "n_train": 2000, "n_val": 1000, "n_test": 1000, "n_train_eval": 1000},
                # the image-tables ``cpu`` preset's optimiser and early stopping
                "train": {"lr": 5e-4, "batch_size": 100, "normalize_grads": True,
                          "lr_schedule": "constant", "warmup_epochs": 3, "patience": 2,
                          "epochs": 4},
                "eval": {"mi": False, "nll_samples": 100, "nll_points": 300, "recon_points": 300,
                         "max_points": 1000, "nll_batch_size": 20, "nll_max_pairs": 2000},
                "seed": 0,
            }
    return cells


def run_cells(cells: dict[str, dict]) -> None:
    import torchmim as tm
    from torchmim.metrics import active_units

    torch.set_num_threads(1)  # 2 cores shared with other work
    for i, (name, config) in enumerate(cells.items()):
        folder = OUT / name
        if (folder / "cell.json").exists():
            continue
        start = time.perf_counter()
        print(f"[{i + 1}/{len(cells)}] {name}", flush=True)
        result = tm.run(tm.RunConfig.from_dict(config), folder, resume=True, progress=False)
        x_test = result.data.test[0][:1000]
        with torch.no_grad():
            units = active_units(result.model, x_test)
        record = {"cell": name, "config": config, "metrics": result.metrics,
                  "active_units": units, "wall_seconds": time.perf_counter() - start}
        (folder / "cell.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        m = result.metrics
        print(f"    nll {m.get('nll', float('nan')):.3f}  mi {m.get('mi', float('nan')):.3f}  "
              f"recon {m.get('recon_rmse', float('nan')):.3f}  5-NN {m.get('knn_acc'):.3f}  "
              f"AU {units}  {record['wall_seconds']:.0f} s", flush=True)


# --------------------------------------------------------------------------- report
COLUMNS = ["mi", "nll", "recon_rmse", "knn_acc", "active_units", "train_seconds"]


def load_rows() -> list[dict]:
    rows = []
    for path in sorted(OUT.glob("*/cell.json")):
        rec = json.loads(path.read_text())
        cfg = rec["config"]
        part = "toy" if cfg["model"]["name"] == "mlp" else "convhvae"
        prior = cfg["model"]["prior"]
        if cfg["model"].get("latent_anchor"):
            prior += f" (P(z)={cfg['model']['latent_anchor']})"
        row = {"part": part, "width": cfg["model"].get("hidden", ""), "prior": prior,
               "objective": cfg["objective"]["name"], "seed": cfg["seed"]}
        row.update({k: rec["metrics"].get(k, float("nan")) for k in COLUMNS if k != "active_units"})
        row["active_units"] = rec["active_units"]
        rows.append(row)
    return rows


def _stat(values: list[float]) -> tuple[float, float, int]:
    v = [x for x in values if x == x]
    if not v:
        return float("nan"), float("nan"), 0
    mean = sum(v) / len(v)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return mean, std, len(v)


def groups(rows: list[dict], part: str) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["part"] == part:
            out.setdefault((r["width"], r["objective"], r["prior"]), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0] if kv[0][0] != "" else 0,
                                                     kv[0][1], kv[0][2] != "normal", kv[0][2])))


def markdown(rows: list[dict]) -> str:
    lines = []
    for part, cols in (("toy", ["mi", "nll", "recon_rmse", "knn_acc", "active_units"]),
                       ("convhvae", ["nll", "recon_rmse", "knn_acc", "active_units",
                                     "train_seconds"])):
        g = groups(rows, part)
        if not g:
            continue
        head = ["width"] * (part == "toy") + ["objective", "prior", "n"] + cols
        lines += [f"**{part}**", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for (width, obj, prior), rs in g.items():
            cells = [str(width)] * (part == "toy") + [obj.upper(), prior, str(len(rs))]
            for c in cols:
                mean, std, n = _stat([float(r[c]) for r in rs])
                digits = 0 if c in ("active_units", "train_seconds") else 3
                cells.append(f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if n > 1 else ""))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def data_entropy(n: int = 200_000) -> float:
    """H of the 2D mixture in nats (Monte Carlo, ± 0.002): the lowest NLL any model can reach."""
    from torchmim.data.toy import paper_2d_mixture

    mixture = paper_2d_mixture()
    x = mixture.sample(n, seed=1)
    x = x[0] if isinstance(x, tuple) else x
    return float(-mixture.log_prob(torch.as_tensor(x)).mean())


def figure(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recon = "recon. error mean ‖x − x̃‖ ↓"
    panels = [("toy", "mi", "MI (nats) ↑"), ("convhvae", "nll", "test NLL (nats) ↓"),
              ("toy", "nll", "test NLL (nats) ↓"), ("convhvae", "knn_acc", "5-NN accuracy ↑"),
              ("toy", "knn_acc", "5-NN accuracy ↑"), ("convhvae", "recon_rmse", recon),
              ("toy", "recon_rmse", recon), ("convhvae", "active_units", "active units (of 80)")]
    bars = {("mim", "normal"): ("#9ecae1", "MIM, N(0, I)"),
            ("mim", "flow"): ("#08519c", "MIM, flow, P(z) = p(z)"),
            ("mim", "flow (P(z)=normal)"): ("#4292c6", "MIM, flow, P(z) = N(0, I)"),
            ("vae", "normal"): ("#fdae6b", "VAE, N(0, I)"),
            ("vae", "flow"): ("#a63603", "VAE, flow")}
    fig, axes = plt.subplots(4, 2, figsize=(11, 12.5))
    for ax, (part, metric, label) in zip(axes.ravel(), panels, strict=True):
        g = groups(rows, part)
        widths = sorted({k[0] for k in g}, key=lambda w: w if w != "" else 0)
        for wi, width in enumerate(widths):
            for j, ((obj, prior), (colour, name)) in enumerate(bars.items()):
                vals = [float(r[metric]) for r in g.get((width, obj, prior), [])]
                mean, std, n = _stat(vals)
                if n == 0:
                    continue
                x = wi + (j - 2) * 0.17
                ax.bar(x, mean, 0.15, color=colour, label=name)
                if n > 1:
                    ax.errorbar(x, mean, std, color="k", capsize=3, lw=1)
                    ax.plot([x] * n, vals, "k.", ms=3)
        if not widths:
            ax.text(0.5, 0.5, "not run yet", ha="center", transform=ax.transAxes)
            continue
        ax.set_xticks(range(len(widths)),
                      [f"width {w}" for w in widths] if part == "toy" else ["convHVAE, MNIST"])
        ax.set_ylabel(label)
        if metric == "nll":  # the differences are small next to the NLL itself
            lo = min(float(r[metric]) for r in rows if r["part"] == part)
            hi = max(float(r[metric]) for r in rows if r["part"] == part)
            ax.set_ylim(lo - 0.15 * (hi - lo + 1e-3), hi + 0.15 * (hi - lo + 1e-3))
            ax.set_ylabel(label + ", axis cut")
        if part == "toy" and metric == "nll":  # the floor: the data's own entropy
            h = data_entropy()
            ax.axhline(h, ls="--", lw=1, color="grey")
            ax.text(0.01, 0.97, f"dashed: H(data) = {h:.2f} nats", transform=ax.transAxes,
                    va="top", fontsize=9, color="dimgrey")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_title("2D mixture (mlp, gmm2d), 3 seeds: mean ± std, dots = seeds")
    axes[0, 1].set_title("convHVAE on MNIST (CPU scale), 1 seed")
    legend = {}
    for ax in axes.ravel():  # one entry per bar kind, in the order of ``bars``
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(name, handle)
    order = [name for _, name in bars.values() if name in legend]
    fig.legend([legend[n] for n in order], order, loc="lower center", ncol=5, frameon=False)
    fig.suptitle("prior p(z) = N(0, I) vs a normalizing-flow prior (NSF, spline coupling)")
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)
    print(f"wrote {FIGURE}")


def report() -> None:
    rows = load_rows()
    if not rows:
        sys.exit(f"no finished cells under {OUT}")
    with open(OUT / "flow_prior.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {OUT / 'flow_prior.csv'} ({len(rows)} cells)\n")
    print(markdown(rows))
    figure(rows)


def bench() -> None:
    """ms per log_prob and per rsample (forward + backward), batch 128, for the zuko flows offered."""
    import zuko

    torch.set_num_threads(1)

    def timed(fn, n: int = 20) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n * 1e3

    for d in (2, 40):
        for name, cls, options in [("MAF, autoregressive", zuko.flows.MAF, {}),
                                   ("NSF, autoregressive", zuko.flows.NSF, {}),
                                   ("MAF, passes=2", zuko.flows.MAF, {"passes": 2}),
                                   ("NSF, passes=2", zuko.flows.NSF, {"passes": 2}),
                                   ("RealNVP", zuko.flows.RealNVP, {})]:
            torch.manual_seed(0)
            flow = cls(d, transforms=3, hidden_features=(64, 64), **options)
            x = torch.randn(128, d)
            lp = timed(lambda: flow().log_prob(x).sum().backward())  # noqa: B023
            rs = timed(lambda: flow().rsample((128,)).square().sum().backward())  # noqa: B023
            print(f"d={d:3d}  {name:20s} log_prob {lp:7.2f} ms   rsample {rs:7.2f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["toy", "conv", "report", "bench"])
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.part == "report":
        report()
    elif args.part == "bench":
        bench()
    else:
        run_cells(toy_cells() if args.part == "toy" else conv_cells())


if __name__ == "__main__":
    main()
