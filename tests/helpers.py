"""Small hand-built models whose densities are known in closed form, tiny image models, and the
loader of the repository's scripts and benchmarks (not a package) for tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from torchmim.distributions import ConditionalGaussian, StandardNormal
from torchmim.models import LatentVariableModel, build_model


class AffineGaussianHead(nn.Module):
    """(mean, logvar) = (A c + b, constant log-variance): a linear-Gaussian conditional."""

    def __init__(self, A: torch.Tensor, b: torch.Tensor, logvar: torch.Tensor) -> None:
        super().__init__()
        self.A = nn.Parameter(A.clone())
        self.b = nn.Parameter(b.clone())
        self.logvar = nn.Parameter(logvar.clone())

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = c @ self.A.T + self.b
        return mean, self.logvar.expand_as(mean)


def linear_gaussian_model(W: torch.Tensor, b: torch.Tensor, sigma: float,
                          exact_posterior: bool = True) -> LatentVariableModel:
    """p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I) and q(z|x) the exact posterior (W with orthogonal
    columns, so the posterior covariance is diagonal) or a perturbed one."""
    x_dim, z_dim = W.shape
    dec = AffineGaussianHead(W, b, torch.full((x_dim,), 2 * torch.log(torch.tensor(sigma)).item()))
    prec = torch.eye(z_dim) + W.T @ W / sigma**2
    cov = torch.linalg.inv(prec)
    A = cov @ W.T / sigma**2
    c = -A @ b
    logvar = torch.log(torch.diagonal(cov))
    if not exact_posterior:
        A, c, logvar = 0.9 * A, c + 0.1, logvar + 0.3
    enc = AffineGaussianHead(A, c, logvar)
    return LatentVariableModel(
        ConditionalGaussian(enc, std_floor=0.0), ConditionalGaussian(dec, std_floor=0.0),
        StandardNormal(z_dim), x_shape=(x_dim,), z_shape=(z_dim,))


def exact_log_marginal(W: torch.Tensor, b: torch.Tensor, sigma: float, x: torch.Tensor) -> torch.Tensor:
    """log N(x; b, W Wᵀ + σ² I)."""
    cov = W @ W.T + sigma**2 * torch.eye(W.shape[0])
    return torch.distributions.MultivariateNormal(b, cov).log_prob(x)


def tiny_config(name: str, x_shape=(1, 8, 8), prior: str = "normal",
                prior_options: dict | None = None, **overrides) -> dict:
    """The config dict of :func:`tiny` (``{"name": name, ...}``), for tests that go through the
    config machinery (overrides, migration)."""
    if name == "image-mlp":
        opts = {"z_dim": 3, "hidden": 8}
    else:
        opts = {"z1_dim": 3, "z2_dim": 2, "hidden": 8, "encoder_channels": [4, 4, 2]}
        if name == "convhvae":
            opts["decoder_channels"] = 4
        else:
            opts.update(pixelcnn_channels=4, pixelcnn_layers=3)
    if prior_options is None:
        prior_options = {"num_pseudo_inputs": 5} if prior == "vampprior" else {}
    opts.update(x_shape=list(x_shape), prior=prior, prior_options=prior_options, **overrides)
    return {"name": name, **opts}


def tiny(name: str, x_shape=(1, 8, 8), prior: str = "normal", prior_options: dict | None = None,
         **overrides) -> LatentVariableModel:
    """A tiny model of architecture ``name`` (z1 = 3, z2 = 2; one-level z = 3); a VampPrior gets
    K = 5 pseudo-inputs unless ``prior_options`` say otherwise."""
    return build_model(tiny_config(name, x_shape, prior, prior_options, **overrides))


def binary_images(n: int, x_shape=(1, 8, 8), seed: int = 0) -> torch.Tensor:
    """Two noisy prototypes (a bar and its complement), binarised."""
    g = torch.Generator().manual_seed(seed)
    proto = torch.zeros(x_shape)
    proto[..., : x_shape[-2] // 2, :] = 1
    labels = torch.randint(0, 2, (n, 1, 1, 1), generator=g).float()
    p = labels * proto + (1 - labels) * (1 - proto)
    p = 0.1 + 0.8 * p
    return torch.bernoulli(p.expand(n, *x_shape), generator=g)


ROOT = Path(__file__).resolve().parents[1]


def load_file(relative_path: str) -> ModuleType:
    """A script or benchmark of the repository (``scripts/x.py``, ``bench/x.py``) as a module."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
