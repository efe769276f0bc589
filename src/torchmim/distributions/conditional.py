"""Conditional densities: modules whose ``forward(context)`` returns a ``torch.distributions`` object.

They are used for the encoder q(z|x) and the decoder p(x|z). A *network* maps the context to the
distribution's parameters; the module only interprets those outputs, so any network (MLP, conv net,
hierarchical encoder) composes with any likelihood.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Independent

from .. import native
from ..networks import MLP
from ..precision import full_precision
from ..registry import Registry
from .mixture import ReparameterizedMixture
from .normal import diagonal_normal

__all__ = [
    "CONDITIONALS",
    "ConditionalBernoulli",
    "ConditionalGaussian",
    "ConditionalGaussianMixture",
    "gaussian_from_mean_logvar",
    "tiled_log_prob",
]


#: Conditional densities by name (``likelihood: bernoulli`` in a model config). Each class offers
#: ``num_outputs(dim, **options)`` (how many values its network must produce for a vector event of
#: size ``dim``) and ``for_vectors(network, dim, **options)``.
CONDITIONALS: Registry[type[nn.Module]] = Registry("conditional density")


def gaussian_from_mean_logvar(
    mean: Tensor,
    logvar: Tensor,
    *,
    std_floor: float = 1e-6,
    logvar_clamp: tuple[float, float] | None = None,
    event_ndims: int = 1,
) -> Independent:
    """Diagonal Gaussian with σ = exp(½·clamp(log σ²)) + ``std_floor``.

    The floor (1e-6 in the paper's reference code) keeps log-densities finite when an encoder becomes
    near-deterministic, as MIM encoders do; the clamp ([−6, 2] for the image models) bounds the
    variance from both sides.
    """
    # a network's bfloat16 output under train.precision=bf16-mixed: densities in full precision
    mean, logvar = full_precision(mean), full_precision(logvar)
    if logvar_clamp is not None:
        logvar = logvar.clamp(*logvar_clamp)
    std = torch.exp(0.5 * logvar) + std_floor
    return diagonal_normal(mean, std, event_ndims)


def _check_tiling(n: int, rows: int) -> None:
    if n == 0 or rows % n:
        raise ValueError(f"tiled_log_prob: {n} values do not tile {rows} contexts")


def _tile_rows(value: Tensor, rows: int) -> Tensor:
    """``value`` (n, ...) repeated to ``rows`` rows: row i is value[i mod n]."""
    n = value.shape[0]
    _check_tiling(n, rows)
    return value.unsqueeze(0).expand((rows // n,) + tuple(value.shape)).reshape(
        (rows,) + tuple(value.shape[1:]))


def tiled_log_prob(conditional: nn.Module, value: Tensor, context: Tensor) -> Tensor:
    """log p(value[i mod n] | context[i]) for every row i of ``context`` (n = ``len(value)``,
    which must divide ``len(context)``): the IS-NLL's S latent samples of n points, row s·n + b
    holding sample s of point b. A conditional density may implement it as a method
    ``tiled_log_prob(value, context)`` that needs neither the S copies of ``value`` nor the
    distribution object (:class:`ConditionalGaussian` over an :class:`~torchmim.networks.MLP`:
    one fused kernel); otherwise it is ``conditional(context).log_prob`` of the repeated values.
    """
    method = getattr(conditional, "tiled_log_prob", None)
    if method is not None:
        return method(value, context)
    return conditional(context).log_prob(_tile_rows(value, context.shape[0]))


@CONDITIONALS.register("gaussian")
class ConditionalGaussian(nn.Module):
    """N(x; μ(c), diag σ²(c)) whose mean and log-variance are regressed by ``network``.

    Args:
        network: maps the context ``c`` to either a tuple ``(mean, logvar)`` or one tensor whose
            ``split_dim`` holds ``[mean, logvar]`` (size 2·d).
        std_floor: added to σ (the reference adds 1e-6).
        logvar_clamp: optional ``(low, high)`` hard clamp on log σ² (the image models use (−6, 2)).
        event_ndims: number of trailing dimensions forming one event (1 for vectors, 3 for images).
        split_dim: dimension along which a single output tensor is split into mean and log-variance.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        std_floor: float = 1e-6,
        logvar_clamp: tuple[float, float] | None = None,
        event_ndims: int = 1,
        split_dim: int = -1,
    ) -> None:
        super().__init__()
        self.network = network
        self.std_floor = float(std_floor)
        self.logvar_clamp = tuple(logvar_clamp) if logvar_clamp is not None else None
        self.event_ndims = event_ndims
        self.split_dim = split_dim

    @staticmethod
    def num_outputs(dim: int, **options: object) -> int:
        return 2 * dim

    @classmethod
    def for_vectors(cls, network: nn.Module, dim: int, **options) -> ConditionalGaussian:
        return cls(network, **options)

    def forward(self, context: Tensor) -> Independent:
        out = self.network(context)
        mean, logvar = out if isinstance(out, tuple) else out.chunk(2, dim=self.split_dim)
        return gaussian_from_mean_logvar(
            mean, logvar, std_floor=self.std_floor, logvar_clamp=self.logvar_clamp,
            event_ndims=self.event_ndims,
        )

    def tiled_log_prob(self, value: Tensor, context: Tensor) -> Tensor:
        """log p(value[i mod n] | context[i]) per row of ``context`` (:func:`tiled_log_prob`).
        Without autograd, for vectors, over an :class:`~torchmim.networks.MLP` whose inference
        :mod:`torchmim.native` runs (``FAST_PATHS.native_kernels``): the network and the
        Gaussian's log-density in one pass of its kernel, neither the outputs nor the repeated
        values materialised (equal up to float rounding, tests/test_native.py). Else the
        distribution's ``log_prob`` of the repeated values."""
        _check_tiling(value.shape[0], context.shape[0])
        layers = None
        net = self.network
        if (type(net).forward is MLP.forward and type(self).forward is ConditionalGaussian.forward
                and not (self._forward_hooks or self._forward_pre_hooks or net._forward_hooks
                         or net._forward_pre_hooks)
                and self.event_ndims == 1 and self.split_dim in (-1, 1) and value.dim() == 2
                and context.dim() == 2 and value.dtype == torch.float32
                and value.device.type == "cpu" and net.out_features == 2 * value.shape[1]):
            layers = net.native_layers(context)  # None where the kernel does not apply
        if layers is None:
            return self(context).log_prob(_tile_rows(value, context.shape[0]))
        return native.mlp_gaussian_log_prob(layers, context, value, std_floor=self.std_floor,
                                            logvar_clamp=self.logvar_clamp)


@CONDITIONALS.register("bernoulli")
class ConditionalBernoulli(nn.Module):
    """Bernoulli(x; sigmoid(ℓ(c))) for binary data, with logits ℓ regressed by ``network``.

    Logits rather than probabilities: ``log_prob`` then uses the stable BCE-with-logits form.
    ``has_rsample`` is ``False``; symmetric MIM samples x ~ p(x|z) with REINFORCE (Eq. 17).
    """

    def __init__(self, network: nn.Module, *, event_ndims: int = 1) -> None:
        super().__init__()
        self.network = network
        self.event_ndims = event_ndims

    @staticmethod
    def num_outputs(dim: int, **options: object) -> int:
        return dim

    @classmethod
    def for_vectors(cls, network: nn.Module, dim: int, **options) -> ConditionalBernoulli:
        return cls(network, **options)

    def forward(self, context: Tensor) -> Independent:
        logits = full_precision(self.network(context))
        return Independent(Bernoulli(logits=logits, validate_args=False), self.event_ndims,
                           validate_args=False)


@CONDITIONALS.register("gmm")
class ConditionalGaussianMixture(nn.Module):
    """Σ_k π_k(c) N(x; μ_k(c), diag σ_k²(c)): a K-component mixture regressed by ``network``.

    ``network`` outputs ``K·(1 + 2·d)`` values per context: K mixing logits, then K means and K
    log-variances of dimension d. Used for the 1D experiments of Appendix D.2, where the univariate
    mixture has an exact implicit-reparameterised sample.
    """

    def __init__(
        self, network: nn.Module, dim: int, num_components: int = 10, *, std_floor: float = 1e-6,
        logvar_clamp: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.dim = dim
        self.num_components = num_components
        self.std_floor = float(std_floor)
        self.logvar_clamp = tuple(logvar_clamp) if logvar_clamp is not None else None

    @staticmethod
    def num_outputs(dim: int, num_components: int = 10, **options: object) -> int:
        return num_components * (1 + 2 * dim)

    @classmethod
    def for_vectors(cls, network: nn.Module, dim: int, **options) -> ConditionalGaussianMixture:
        return cls(network, dim, **options)

    def forward(self, context: Tensor) -> ReparameterizedMixture:
        out = full_precision(self.network(context))
        k, d = self.num_components, self.dim
        logits, rest = out[..., :k], out[..., k:]
        mean, logvar = rest.reshape(rest.shape[:-1] + (k, 2 * d)).chunk(2, dim=-1)
        components = gaussian_from_mean_logvar(
            mean, logvar, std_floor=self.std_floor, logvar_clamp=self.logvar_clamp
        )
        return ReparameterizedMixture(Categorical(logits=logits, validate_args=False), components)

