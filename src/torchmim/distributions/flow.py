"""A normalizing-flow density (zuko) as the latent prior p(z) or a low-dimensional data prior q(x).

Select it by name: ``prior: flow`` (with ``prior_options: {transforms: 3, ...}``) on any model that
builds its prior from :data:`~torchmim.distributions.priors.PRIORS`, or ``data_prior: flow`` on the
``mlp`` model (a parametric q(x) in place of the marginal of Eq. 16; the base
:meth:`~torchmim.distributions.priors.Prior.anchored_log_prob` then returns ``log_prob(x)``).

Design, with the measurements behind it (ms per forward + backward at batch 128, 3 transforms,
hidden (64, 64), one CPU thread on a shared 2-core machine, so ±30%; ``python
scripts/flow_prior_comparison.py bench`` measures them)::

                      d = 2                     d = 40
                      log_prob   rsample        log_prob   rsample
    MAF, autoregr.      2.7        4.2            2.2        66
    NSF, autoregr.      6.7       10.7           18.6       862
    MAF, passes=2       2.1        2.5            1.9        3.2
    NSF, passes=2       5.2        9.8           23         45
    RealNVP             1.6        1.4            2.8        2.6

* **Coupling, not autoregressive, by default.** zuko's flows map data to noise (``log_prob`` is one
  pass of each hyper-network), and sample by inverting that map. An autoregressive transform inverts
  in ``passes`` sequential passes, which is D for a fully autoregressive one: 30x (MAF) and 45x
  (NSF) the cost of ``log_prob`` at d = 40. MIM needs both directions at every step — ``log_prob``
  on the encoder path and in the VAE's KL, a pathwise ``rsample`` on the decoder path z ~ p(z) —
  so the default is ``passes=2`` (a coupling flow in zuko's masked form: two passes whatever d).
* **Spline (NSF) by default.** An affine coupling in 2-D moves one coordinate by an affine function
  of the other per transform, which cannot bend a density much; the monotonic rational-quadratic
  spline (8 bins on [-5, 5], identity outside) can, for about 10x the cost of an affine coupling at
  d = 40 (still small next to a convolutional encoder). ``flow: maf`` (affine, autoregressive masks)
  and ``flow: realnvp`` (affine coupling, checkered masks) are the cheaper alternatives;
  ``passes: null`` gives the fully autoregressive MAF/NSF (fast density, D-pass sampling).
* **Exact, pathwise rsample.** zuko's ``NormalizingFlow.rsample`` draws u ~ N(0, I) with
  ``rsample`` and returns f⁻¹(u); the inverse of every transform here is closed form (affine, or the
  root of the spline's quadratic) or, for masked transforms, ``passes`` fixed-point passes that are
  exact by construction — so ``has_rsample = True`` is honest and the gradient reaches every
  parameter (tests/test_flow.py checks it against finite differences in float64).
* **Start at N(0, I).** zuko initialises the hyper-networks like any ``nn.Linear``, which puts the
  initial flow about 0.03–0.3 nats (d = 2) and 1–4 nats (d = 40) of KL away from N(0, I). The last
  layer of every hyper-network is rescaled here by ``init_scale`` (default 0.01) with a zero bias:
  zero output is the identity for both the affine and the spline transforms (uniform bins, unit
  derivatives), so MIM/VAE start from the paper's N(0, I) set-up, while a non-zero ``init_scale``
  keeps a gradient on the hidden layers from the first step (``init_scale: 0`` is exactly N(0, I),
  ``init_scale: 1`` zuko's own initialisation).
* **MIM needs a fixed latent anchor with a learned prior.** With ``latent_anchor`` unset, symmetric
  MIM samples its decoder path from P(z) = p(z), the flow itself; nothing then fixes the scale of
  z, and on the 2D toy p(z) and q(z|x) shrink together (log p(z) on the encoder path climbs from
  −2.8 to +5.4 nats in 20 epochs) while the mutual information goes to 0 (a learned diagonal
  Gaussian p(z) in the same set-up keeps its MI: the flow finds this optimum, the Gaussian not). ``latent_anchor: normal`` (P(z) = N(0, I), the paper's set-up for
  learned priors, App. D) keeps MIM's information and improves its NLL (docs/flow.md has the
  numbers). The VAE never samples P(z) and needs no anchor.
* Log-densities are computed in log space by zuko (log-scales, log-derivatives of the spline);
  parameters and buffers (the base N(0, I), the masks and orders) move with ``.to()``; the
  architecture depends only on the options (``randperm`` orders are buffers), so ``state_dict``
  round-trips and construction is deterministic under a seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import zuko
from torch import nn
from zuko.distributions import NormalizingFlow

from ..errors import ConfigError
from .priors import PRIORS, Prior

__all__ = ["FLOW_ACTIVATIONS", "FLOW_KINDS", "FlowPrior"]

# zuko's hyper-networks use torch's nn.Linear (masked) or zuko's own Linear (coupling MLPs).
_LINEAR = (nn.Linear, zuko.nn.Linear)

#: The zuko flows offered by ``flow`` (see the module docstring for the choice of default).
FLOW_KINDS = {"nsf": zuko.flows.NSF, "maf": zuko.flows.MAF, "realnvp": zuko.flows.RealNVP}
#: Hidden activations of the hyper-networks (``relu`` is zuko's default; the others are smooth).
FLOW_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


@PRIORS.register("flow")
class FlowPrior(Prior):
    """A zuko normalizing flow over vectors of size ``shape``, from a N(0, I) base.

    Args:
        shape: event size (an int, or a one-element shape).
        flow: ``"nsf"`` (neural spline flow, default), ``"maf"`` (affine) or ``"realnvp"``.
        transforms: number of flow transforms.
        hidden_features: widths of each transform's hyper-network (an int is one layer).
        activation: hidden activation of the hyper-networks: ``relu`` (zuko's default), ``elu``,
            ``silu`` or ``tanh``.
        passes: passes of the inverse of ``nsf``/``maf`` transforms: 2 (coupling, default) or
            ``None`` (fully autoregressive: D sequential passes per sample). ``realnvp`` is a coupling
            flow and takes only 2 or ``None``.
        bins: spline bins (``nsf`` only; default 8).
        randperm: random feature orders (``nsf``/``maf``) or masks (``realnvp``) instead of
            alternating ones (they are buffers, so saved with the model).
        init_scale: scale of the hyper-networks' last layer at initialisation (0: exactly N(0, I)).
    """

    autocast_safe = False  # the hyper-networks run inside log_prob (torchmim.precision)

    def __init__(
        self,
        shape: int | Sequence[int],
        *,
        flow: str = "nsf",
        transforms: int = 3,
        hidden_features: int | Sequence[int] = (64, 64),
        activation: str = "relu",
        passes: int | None = 2,
        bins: int | None = None,
        randperm: bool = False,
        init_scale: float = 0.01,
    ) -> None:
        super().__init__()
        size = torch.Size([shape] if isinstance(shape, int) else shape)
        if len(size) != 1 or size[0] < 1:
            raise ConfigError(f"the flow prior needs a vector event shape, got {tuple(size)}")
        if not isinstance(flow, str) or flow.lower() not in FLOW_KINDS:
            raise ConfigError(f"flow must be one of {', '.join(FLOW_KINDS)}, got {flow!r}")
        kind = flow.lower()
        transforms = _positive_int("transforms", transforms)
        hidden = [hidden_features] if isinstance(hidden_features, int) else hidden_features
        if (isinstance(hidden, str) or not isinstance(hidden, Sequence) or not hidden
                or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden)):
            raise ConfigError("hidden_features must be a positive integer or a list of "
                              f"them, got {hidden_features!r}")
        if not isinstance(activation, str) or activation.lower() not in FLOW_ACTIVATIONS:
            raise ConfigError(f"activation must be one of "
                              f"{', '.join(FLOW_ACTIVATIONS)}, got {activation!r}")
        if passes is not None:
            passes = _positive_int("passes", passes)
        if kind == "realnvp" and passes not in (None, 2):
            raise ConfigError(f"passes={passes} does not apply to flow 'realnvp' "
                              "(a coupling flow); use flow 'nsf' or 'maf'")
        if bins is not None and kind != "nsf":
            raise ConfigError(f"bins applies to flow 'nsf' only, not {kind!r}")
        if not isinstance(randperm, bool):
            raise ConfigError(f"randperm must be true or false, got {randperm!r}")
        if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)) \
                or not 0 <= init_scale < float("inf"):
            raise ConfigError(f"init_scale must be a finite number >= 0, got {init_scale!r}")

        kwargs: dict = {"transforms": transforms, "hidden_features": tuple(hidden),
                        "activation": FLOW_ACTIVATIONS[activation.lower()]}
        if kind == "realnvp":
            kwargs["randmask"] = randperm
        else:
            kwargs["randperm"] = randperm
            kwargs["passes"] = passes
        if kind == "nsf":
            kwargs["bins"] = 8 if bins is None else _positive_int("bins", bins)
            if kwargs["bins"] < 2:
                raise ConfigError(f"bins must be at least 2, got {bins!r}")
        self.shape = size
        self.kind = kind
        self.flow = FLOW_KINDS[kind](size[0], **kwargs)
        self._near_identity(float(init_scale))

    @torch.no_grad()
    def _near_identity(self, scale: float) -> None:
        # A zero hyper-network output is the identity transform (affine: shift 0, log-scale 0;
        # spline: uniform bins, unit derivatives), so shrinking the last layer starts p at ≈ N(0, I).
        for transform in self.flow.transform.transforms:
            hyper = getattr(transform, "hyper", None)
            if hyper is not None:
                last = [m for m in hyper.modules() if isinstance(m, _LINEAR)][-1]
                last.weight.mul_(scale)
                last.bias.zero_()
            else:  # d = 1: zuko's element-wise transform holds its parameters directly
                for phi in transform.phi:
                    phi.mul_(scale)

    def forward(self) -> NormalizingFlow:
        return self.flow()

    def extra_repr(self) -> str:
        return f"dim={self.shape[0]}, flow={self.kind!r}"
