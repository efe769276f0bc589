"""The paper's low-dimensional experiments as named sweeps (Section 6.2, Appendix D).

Each factory returns the paper's protocol by default; ``quick`` shrinks the same grid (fewer seeds,
epochs and points) so that a user sees the shape of the result in minutes.
"""

from __future__ import annotations

from typing import Any

from .spec import FigureSpec, SweepSpec

__all__ = [
    "ONE_D_BASE",
    "appendix_d1",
    "appendix_d2",
    "appendix_d3",
    "appendix_d4",
    "fig3",
    "fig4",
    "fig5",
]

SEEDS = list(range(10))
WIDTHS = [5, 20, 50, 100, 200, 300, 400, 500]
LATENTS = list(range(2, 21, 2))
# The paper's protocol (Section 6.2 and the reference code): tanh, β and lr warm-up over 3 epochs,
# early stopping with patience 3 at β = 1, at most 200 epochs, 10,000 fresh points per epoch.
TOY_TRAIN = {"epochs": 200, "warmup_epochs": 3}
TOY_QUICK_SET = {"train.epochs": 20, "data.n_train": 4000, "data.n_val": 2000, "data.n_test": 4000,
                 "eval.max_points": 4000, "eval.nll_samples": 100}


def fig3() -> SweepSpec:
    return SweepSpec(
        name="fig3",
        description="2D mixture of Section 6.2: x ∈ R², z ∈ R², encoder and decoder with one hidden "
                    "layer of tanh units, p(z) = N(0, I), q(x) the marginal of Eq. (16). MIM and VAE "
                    "train the same model; the hidden width varies.",
        paper="Fig. 3: MIM's mutual information and 5-NN accuracy are higher and its reconstruction "
              "error lower than VAE's at every width (MI saturates, reconstruction near zero); "
              "VAE has the better test NLL.",
        base={"model": {"name": "mlp", "x_dim": 2, "z_dim": 2, "activation": "tanh"},
              "data": {"name": "gmm2d"}, "train": dict(TOY_TRAIN)},
        grid={"model.hidden": WIDTHS, "objective.name": ["vae", "mim"], "seed": SEEDS},
        presets={"quick": {"grid": {"model.hidden": [5, 20, 500], "seed": [0, 1]},
                           "set": dict(TOY_QUICK_SET)}},
        x="model.hidden", x_label="hidden units",
        figures=[FigureSpec("curves", "fig3.png", {"title": "Fig. 3 — 2D mixture, 2D latent"}),
                 FigureSpec("toy_panels", "fig2.png",
                            {"select": {"model.hidden": [5, 20, 500], "seed": 0},
                             "title_keys": ["model.hidden"]})],
    )


def fig4() -> SweepSpec:
    return SweepSpec(
        name="fig4",
        description="20D mixture of Fig. 4 (5 components, std 0.25), width 50, latent size 2 to 20: "
                    "a bottleneck version of Fig. 3.",
        paper="Fig. 4: MIM's MI and 5-NN accuracy above VAE's and rising with the latent size while "
              "VAE's deteriorate (stronger collapse); MIM reconstructs better; VAE's NLL is better.",
        base={"model": {"name": "mlp", "x_dim": 20, "hidden": 50, "activation": "tanh"},
              "data": {"name": "gmm20d"}, "train": dict(TOY_TRAIN)},
        grid={"model.z_dim": LATENTS, "objective.name": ["vae", "mim"], "seed": SEEDS},
        presets={"quick": {"grid": {"model.z_dim": [2, 10, 20], "seed": [0, 1]},
                           "set": dict(TOY_QUICK_SET)}},
        x="model.z_dim", x_label="latent dimension",
        figures=[FigureSpec("curves", "fig4.png", {"title": "Fig. 4 — 20D mixture"})],
    )


def fig5() -> SweepSpec:
    return SweepSpec(
        name="fig5",
        description="Fashion-MNIST projected to 20D with PCA fit on the 50k training images "
                    "(50k train / 10k validation / 10k test), width 50, latent size 2 to 20; trained "
                    "for 200 epochs and the lowest-validation-loss model selected.",
        paper="Fig. 5: MIM has higher MI and 5-NN accuracy at all but the smallest latent sizes, "
              "similar reconstruction error, and worse NLL than VAE. The paper's PCA captures 78.5% "
              "of the variance.",
        base={"model": {"name": "mlp", "x_dim": 20, "hidden": 50, "activation": "tanh"},
              "data": {"name": "fashion-mnist-pca", "n_components": 20},
              "train": {"epochs": 200, "warmup_epochs": 3, "early_stopping": False},
              # the reference's raw KSG as `mi`, and two estimates that do not depend on the
              # coordinates' scales (codes and principal components are on different scales here)
              "eval": {"mi_standardized": True, "mi_rank": True}},
        grid={"model.z_dim": LATENTS, "objective.name": ["vae", "mim"], "seed": SEEDS},
        presets={"quick": {"grid": {"model.z_dim": [2, 10, 20], "seed": [0]},
                           "set": {"train.epochs": 10, "data.n_train": 10000, "data.n_test": 5000,
                       "eval.max_points": 5000, "eval.nll_samples": 100}}},
        x="model.z_dim", x_label="latent dimension",
        metrics=["mi", "mi_standardized", "mi_rank", "nll", "recon_rmse", "knn_acc"],
        # the paper: MIM's MI and 5-NN higher "at all but the smallest latent sizes" (no claim at
        # 2), "similar" reconstruction error (no claim of a side), the VAE's NLL better
        claims={"mi": "higher", "mi_standardized": "higher", "mi_rank": "higher", "nll": "higher",
                "knn_acc": "higher"},
        claim_exceptions=[{"where": {"model.z_dim": 2}, "metric": m, "claim": None}
                          for m in ("mi", "mi_standardized", "mi_rank", "knn_acc")],
        # the MI panel shows KSG on standardised coordinates: raw KSG's max-norm measures the
        # scale of MIM's tight codes against the principal components' spread here, and the
        # scale-free rank estimate agrees with the standardised one (docs/experiments.md, Fig. 5)
        figures=[FigureSpec("curves", "fig5.png", {"title": "Fig. 5 — Fashion-MNIST, PCA to 20D",
                                                   "metrics": ["mi_standardized", "nll",
                                                               "recon_rmse", "knn_acc"]}),
                 FigureSpec("curves", "fig5-mi.png", {
                     "title": "Fig. 5 — three KSG estimates of I(x; z) on the same pairs",
                     "metrics": ["mi", "mi_standardized", "mi_rank"]})],
    )


def appendix_d1() -> SweepSpec:
    spec = fig3()
    return SweepSpec(
        name="appendix-d1",
        description="Appendix D.1: the 2D experiment of Fig. 3 with the joint entropy added to the "
                    "VAE loss (VAE + H) and the sample entropy subtracted from the MIM loss (MIM − H).",
        paper="Fig. 11–12: VAE + H escapes posterior collapse (high MI, low reconstruction error, "
              "better classification); MIM − H collapses severely (almost zero MI).",
        base=spec.base,
        grid={"model.hidden": WIDTHS, "objective.name": ["vae_plus_h", "mim_minus_h"], "seed": SEEDS},
        # VAE + H − (MIM − H): higher MI and 5-NN accuracy, lower reconstruction error; no NLL claim
        compare=["vae_plus_h", "mim_minus_h"],
        claims={"mi": "higher", "recon_error": "lower", "knn_acc": "higher"},
        presets={"quick": {"grid": {"model.hidden": [5, 20, 500], "seed": [0, 1]},
                           "set": dict(TOY_QUICK_SET)}},
        x="model.hidden", x_label="hidden units",
        figures=[FigureSpec("curves", "fig12.png", {"title": "Fig. 12 — entropy as an MI regulariser"}),
                 FigureSpec("toy_panels", "fig11.png",
                            {"select": {"model.hidden": [5, 20, 500], "seed": 0},
                             "title_keys": ["model.hidden"]})],
    )


# The 1D problem of Appendix D.2–D.4: anchors P(x) (3 components) and P(z) (2 components) are fixed
# mixtures; q(x), p(z), q(z|x), p(x|z) are 10-component mixtures, the conditionals' parameters
# regressed by one hidden layer of 10 swish units (the paper's "2 fully connected layers").
ONE_D_BASE: dict[str, Any] = {
    "data": {"name": "gmm", "means": [[-2.0], [0.5], [2.5]], "std": [0.4, 0.5, 0.3],
             "weights": [0.3, 0.5, 0.2], "n_train": 10000, "n_val": 5000, "n_test": 5000},
    "model": {"name": "mlp", "x_dim": 1, "z_dim": 1, "hidden": 10, "depth": 1,
              "activation": "swish", "posterior": "gmm", "likelihood": "gmm",
              "conditional_options": {"num_components": 10},
              "prior": "gmm", "prior_options": {"num_components": 10},
              "data_prior": "gmm", "data_prior_options": {"num_components": 10},
              "latent_anchor": "gmm",
              "latent_anchor_options": {"num_components": 2, "means": [[-1.0], [1.0]], "stds": 0.5,
                                        "learnable": False},
              "logvar_clamp": [-10.0, 4.0]},
    "train": {"epochs": 200, "warmup_epochs": 3},
    # consistency_x / consistency_z: energy distances that put numbers on the figures' "prior"
    # columns (metrics.prior_consistency)
    "eval": {"nll_samples": 200, "consistency": True},
}
#: Seeds of the 1-D sweeps: the paper shows one model per panel; 5 give the claims a paired test.
ONE_D_SEEDS = list(range(5))
#: The 1-D claims: the first model of ``compare`` is the more consistent one.
ONE_D_CLAIMS = {"consistency_x": "lower", "consistency_z": "lower"}
ONE_D_METRICS = ["mi", "nll", "recon_rmse", "knn_acc", "consistency_x", "consistency_z"]
ONE_D_QUICK = {"train.epochs": 15, "data.n_train": 4000, "data.n_val": 2000, "data.n_test": 2000,
               "eval.max_points": 2000, "eval.nll_samples": 50}


def _columns(select_key: str, labels: list[tuple[str, str]], modes: list[str],
             stage: str = "final") -> list[dict[str, Any]]:
    return [{"select": {select_key: value, "seed": 0}, "mode": mode, "stage": stage,
             "title": f"{title}: {mode}"} for mode in modes for value, title in labels]


def appendix_d2() -> SweepSpec:
    return SweepSpec(
        name="appendix-d2",
        description="Appendix D.2: 1D x and z, all four distributions learned 10-component mixtures, "
                    "anchors fixed mixtures; the MIM loss against L_CE (MIM without its consistency "
                    "term R_MIM).",
        paper="Fig. 13: both reconstruct the anchors and match the opposite anchors; only MIM learns "
              "a consistent model — its prior q(x) matches the decoder's marginal from p(z) and p(z) "
              "the encoder's marginal from q(x) — while L_CE fits the priors to the anchors.",
        base=ONE_D_BASE,
        grid={"objective.name": ["ce", "mim"], "seed": ONE_D_SEEDS},
        compare=["mim", "ce"], claims=dict(ONE_D_CLAIMS),
        metrics=list(ONE_D_METRICS),
        presets={"quick": {"grid": {"seed": [0]}, "set": dict(ONE_D_QUICK)}},
        figures=[FigureSpec("consistency_1d", "fig13.png", {
            "columns": _columns("objective.name", [("ce", "CE"), ("mim", "MIM")],
                                ["reconstruction", "anchor", "prior"])})],
    )


PRIOR_VARIANTS = [
    {"label": "learned GMM", "set": {"model.prior": "gmm", "model.data_prior": "gmm"}},
    {"label": "learned Gaussian", "set": {"model.prior": "gaussian", "model.prior_options": {},
                                          "model.data_prior": "gaussian",
                                          "model.data_prior_options": {}}},
    {"label": "fixed N(0,1)", "set": {"model.prior": "normal", "model.prior_options": {},
                                      "model.data_prior": "normal", "model.data_prior_options": {}}},
]


def appendix_d3() -> SweepSpec:
    return SweepSpec(
        name="appendix-d3",
        description="Appendix D.3: MIM on the 1D problem with learned mixture priors, learned "
                    "Gaussian priors, and fixed standard-normal priors for q(x) and p(z).",
        paper="Fig. 14: parameterising the priors changes all learned distributions; the most "
              "expressive (learned mixture) priors give the best consistency between the priors and "
              "the samples generated from them.",
        base=ONE_D_BASE,
        grid={"priors": PRIOR_VARIANTS, "seed": ONE_D_SEEDS},
        compare=["learned GMM", "fixed N(0,1)"], claims=dict(ONE_D_CLAIMS),
        metrics=list(ONE_D_METRICS),
        presets={"quick": {"grid": {"seed": [0]}, "set": dict(ONE_D_QUICK)}},
        group="priors",
        figures=[FigureSpec("consistency_1d", "fig14.png", {
            "columns": _columns("priors", [(v["label"], v["label"]) for v in PRIOR_VARIANTS],
                                ["prior"])})],
    )


def appendix_d4(init_epochs: int = 100) -> SweepSpec:
    orders = [
        {"label": "CE→MIM", "set": {"init.objective": {"name": "ce"}, "objective.name": "mim"}},
        {"label": "MIM→CE", "set": {"init.objective": {"name": "mim"}, "objective.name": "ce"}},
    ]
    columns = []
    for label, first, second in (("CE→MIM", "CE", "MIM"), ("MIM→CE", "MIM", "CE")):
        for stage, name in (("init", first), ("final", second)):
            for mode in ("reconstruction", "prior"):
                columns.append({"select": {"order": label, "seed": 0}, "mode": mode, "stage": stage,
                                "title": f"{label}, {name}: {mode}"})
    return SweepSpec(
        name="appendix-d4",
        description="Appendix D.4: the 1D problem trained first with L_CE then with MIM (CE→MIM), "
                    "and first with MIM then with L_CE (MIM→CE).",
        paper="Fig. 15: all models reconstruct well; only models last trained with MIM are "
              "consistent (prior decoding matches q(x), prior encoding matches p(z)); a consistent "
              "MIM model trained further with L_CE loses consistency while fitting the priors to the "
              "anchors better.",
        base={**ONE_D_BASE, "init": {"epochs": init_epochs}},
        grid={"order": orders, "seed": ONE_D_SEEDS},
        compare=["CE→MIM", "MIM→CE"], claims=dict(ONE_D_CLAIMS),
        metrics=list(ONE_D_METRICS),
        presets={"quick": {"grid": {"seed": [0]},
                           "set": {**ONE_D_QUICK, "init.epochs": 10}}},
        group="order",
        figures=[FigureSpec("consistency_1d", "fig15.png", {"columns": columns})],
    )
