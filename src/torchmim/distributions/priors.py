"""Unconditional densities: the latent prior p(z), the data prior q(x) and the anchors P(z).

Each is a :class:`Prior`: an ``nn.Module`` whose ``forward()`` returns a
``torch.distributions.Distribution``, so priors are interchangeable wherever a density over z or x
is needed, and every model picks its prior the same way — by a name in :data:`PRIORS` plus options
(``prior: gmm``, ``prior_options: {num_components: 10}``), built by :func:`build_prior`. A prior
used as the data prior q(x) also answers :meth:`Prior.anchored_log_prob`, the log q(x) that the MIM loss
needs at a sample of the anchored encoding or decoding distribution; a parametric density just
evaluates ``log_prob``, while the marginal of Eq. (16)
(:class:`~torchmim.distributions.marginal.MarginalDataPrior`) estimates it.

Adding a prior is one class plus its registration (see :class:`Prior` for the contract)::

    from torch.distributions import Independent, Laplace

    @PRIORS.register("laplace")
    class LaplacePrior(Prior):  # factorised Laplace(0, b) with a learnable scale b

        def __init__(self, shape: int, scale: float = 1.0) -> None:
            super().__init__()
            self.register_buffer("loc", torch.zeros(shape))
            self.log_scale = nn.Parameter(torch.full((shape,), math.log(scale)))

        def forward(self) -> Independent:
            return Independent(Laplace(self.loc, self.log_scale.exp()), 1)

after which ``prior: laplace`` (and ``prior_options: {scale: 0.5}``) works in every model config.
"""

from __future__ import annotations

import inspect
import math
import reprlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent

from ..errors import ConfigError
from ..registry import Registry, suggest
from .conditional import gaussian_from_mean_logvar
from .mixture import ReparameterizedMixture
from .normal import diagonal_normal

if TYPE_CHECKING:  # pragma: no cover
    from ..models.latent_variable_model import LatentVariableModel

__all__ = [
    "PRIORS",
    "DiagonalGaussian",
    "GaussianMixture",
    "Path",
    "Prior",
    "StandardNormal",
    "build_prior",
    "check_prior",
]

Path = Literal["encoder", "decoder"]

#: Registry of priors by name: every model config's ``prior`` (and the MLP model's ``data_prior``
#: and ``latent_anchor``) is looked up here; ``prior_options`` go to :meth:`Prior.from_config`.
PRIORS: Registry[type[Prior]] = Registry("prior")


def _shape(shape: int | Sequence[int]) -> torch.Size:
    """An event shape of positive integers (an int is a vector's size); a one-line ConfigError."""
    dims = [shape] if isinstance(shape, (int, np.integer)) else shape
    try:
        dims = list(dims)
    except TypeError:
        dims = None
    if not dims or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
                           for d in dims):
        raise ConfigError(f"a prior's shape must be a positive integer or a tuple of them, got "
                          f"{shape!r}")
    return torch.Size(int(d) for d in dims)


def _finite_tensor(value: Any, name: str, dtype: torch.dtype) -> Tensor:
    """``value`` as a tensor of finite numbers, or a one-line ConfigError naming ``name``."""
    try:
        t = torch.as_tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"{name} must be numbers, got {reprlib.repr(value)}") from None
    if not torch.isfinite(t).all():
        raise ConfigError(f"{name} must be finite, got {reprlib.repr(value)}")
    return t


class Prior(nn.Module, ABC):
    """An unconditional density p(z) (or q(x), P(z)) as a module; ``forward()`` returns it.

    Why a module returning a distribution: the learnable parameters live in the module (so they are
    in ``state_dict`` and the optimiser), while objectives and metrics only ever see a
    ``torch.distributions.Distribution`` — so any prior works with any objective. ``forward()`` is
    called once per training step (a VampPrior runs the encoder on its pseudo-inputs there), and
    the distribution it returns is used for that step only.

    **What a new prior must guarantee** (the contract every model and objective relies on):

    * ``forward()`` returns a ``Distribution`` with ``event_shape == shape`` (the shape it was built
      with) and empty batch shape; ``log_prob(value)`` accepts any leading sample dimensions
      (``value.shape = (*lead, *shape)`` → ``(*lead,)``).
    * ``has_rsample`` is honest: ``True`` only when ``rsample`` is exact and pathwise. Symmetric MIM
      samples z ∼ p(z) and differentiates through the sample when it can; a prior without an exact
      pathwise sample must say ``has_rsample = False`` (the objectives then use REINFORCE, Eq. 17)
      rather than return a sample whose gradient is silently wrong or missing.
    * ``log_prob`` is computed in log space (``logsumexp`` for mixtures, no ``log(exp(...))``) and
      is float32-safe: finite for values the prior can produce, no catastrophic cancellation.
    * The constructor is ``(shape, **options)``, where ``shape`` is the event shape (an int for a
      vector) and the options are plain config values (numbers, strings, lists), since they come
      from YAML and are saved with the model; any other constructor overrides :meth:`from_config`.
      Bad options raise ``TypeError``/``ValueError`` (or :class:`~torchmim.errors.ConfigError`);
      :func:`build_prior` turns them into a one-line ``ConfigError`` naming the config key.
      Construction is cheap and has no side effect but the global RNG: model configs build the
      prior once when they are read, to check the options (:func:`check_prior`), and discard it.
    * Parameter and buffer names are part of the saved-model format (``prior.<name>`` in
      ``state_dict``): renaming them breaks saved models.

    **Hooks** (all but ``forward`` have defaults that suit a plain parametric density):

    * :attr:`needs_model` — ``True`` for densities defined through the model (the marginal q(x) of
      Eq. 16, the VampPrior): their ``forward()`` works only after :meth:`bind`.
    * :meth:`bind` — called by the owning :class:`~torchmim.models.LatentVariableModel` at
      construction. A density defined through the model keeps a *reference* (in a plain list, not a
      submodule), so the model's networks appear once in ``state_dict`` and ``parameters()``.
    * :meth:`anchored_log_prob` — log q(x) at a sample of an anchored path (only asked of the data
      prior); a parametric density returns ``log_prob(x)``.
    * :meth:`initialize_from_data` — optional data-dependent initialisation before training
      (``LatentVariableModel.initialize_from_data`` calls it on every submodule that defines it, so
      a composite prior need not forward it to the priors inside it); default: nothing.
    * :meth:`from_config` — builds the prior from a config's ``prior_options``; ``x_shape`` (the
      shape of one observation) is there for priors defined over the data space, such as the
      VampPrior's pseudo-inputs.
    * :attr:`autocast_safe` — ``False`` for a density whose ``log_prob`` runs networks (a flow's
      hyper-networks): under ``train.precision="bf16-mixed"`` their bfloat16 rounding would reach
      the log-density, so such a model is refused (:mod:`torchmim.precision`). A density whose
      parameters come from a network's output passes them through
      :func:`~torchmim.precision.full_precision` first.
    """

    #: Whether this density is defined through the model (then ``forward`` needs :meth:`bind`).
    needs_model: ClassVar[bool] = False
    #: Whether ``log_prob`` stays in full precision under autocast (see the class docstring).
    autocast_safe: ClassVar[bool] = True

    @abstractmethod
    def forward(self) -> Distribution:
        """The density as a ``torch.distributions.Distribution`` with event shape ``shape``."""

    def bind(self, model: LatentVariableModel) -> None:
        """Called by the model that owns this prior; densities defined through the model keep a
        reference to it (not a submodule). Default: nothing."""

    def anchored_log_prob(
        self, x: Tensor, *, path: Path, log_px_z: Tensor, log_pz: Tensor, log_qz_x: Tensor
    ) -> Tensor:
        """log q(x) at a sample of the anchored encoding (``path="encoder"``) or decoding path.

        ``log_px_z``, ``log_pz`` and ``log_qz_x`` are the model's terms at the same sample, for a
        density (the marginal of Eq. 16) that is estimated from them. A parametric density ignores
        the path and the other terms and returns ``log_prob(x)``.
        """
        return self().log_prob(x)

    def initialize_from_data(self, x: Tensor) -> None:
        """Data-dependent initialisation from training observations ``x`` (batch first), called
        once before training; the default does nothing. The VampPrior sets its pseudo-inputs."""

    @classmethod
    def from_config(cls, shape: int | Sequence[int], *, x_shape: Sequence[int] | None = None,
                    **options: Any) -> Prior:
        """Build from a config: ``cls(shape, **options)``. Override when the constructor needs
        something else than the event shape (the VampPrior takes ``x_shape``)."""
        return cls(shape, **options)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check_prior(name: str, options: Any, *, where: str, shape: int | Sequence[int] | None = None,
                x_shape: Sequence[int] | None = None) -> str:
    """Validate a prior's name and options before anything is built; returns the registered name
    (an alias such as ``standard`` becomes ``normal``). Called by the model configs'
    ``__post_init__``, so a bad prior is a :class:`~torchmim.errors.ConfigError` when the config
    is read, not when a run starts.

    ``where`` is the config key of the name (``model.prior``); the options are reported under
    ``<where>_options``. Option *names* are checked against the constructor's signature (unless it
    takes ``**kwargs``), with a "did you mean". With ``shape``, the prior is also built once, on
    the CPU and with the global RNG state restored afterwards (so seeding is unaffected), which
    checks the option *values* exactly as :func:`build_prior` will.
    """
    options_where = f"{where}_options"
    try:
        canonical = PRIORS.canonical(name)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if not isinstance(options, Mapping):
        raise ConfigError(f"{options_where}: expected a mapping of options, got {options!r}")
    cls = PRIORS.get(canonical)
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - a signature inspect cannot read
        params = []
    if params and not any(p.kind is p.VAR_KEYWORD for p in params):
        keyword = [p.name for p in params[1:]
                   if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in options:
            if key not in keyword:
                raise ConfigError(f"{options_where}.{key}: not an option of prior {canonical!r}."
                                  f"{suggest(str(key), keyword)} "
                                  f"Options: {', '.join(keyword) or 'none'}")
    if shape is not None:
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            build_prior(canonical, shape, options, x_shape=x_shape, where=options_where)
    return canonical


def build_prior(name: str, shape: int | Sequence[int], options: Mapping[str, Any] | None = None,
                *, x_shape: Sequence[int] | None = None,
                where: str = "model.prior_options") -> Prior:
    """The prior registered as ``name`` over event shape ``shape``, built with ``options``.

    ``x_shape`` is the shape of one observation (for priors over the data space, e.g. VampPrior
    pseudo-inputs). A ``TypeError``/``ValueError`` from bad options becomes a one-line
    :class:`~torchmim.errors.ConfigError` naming ``where`` (the config key of the options).
    """
    cls = PRIORS.get(name)
    try:
        return cls.from_config(shape, x_shape=x_shape, **dict(options or {}))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: prior {name!r}: {_first_line(e)}") from None


def _check_std_floor(std_floor: Any) -> None:
    if isinstance(std_floor, bool) or not isinstance(std_floor, (int, float)) or not (
            math.isfinite(std_floor) and std_floor >= 0):
        raise ConfigError(f"std_floor must be a finite number >= 0, got {std_floor!r}")


@PRIORS.register("normal")
class StandardNormal(Prior):
    """N(0, I) over ``shape``: the paper's p(z) and P(z), the default prior of every model
    (registered as ``normal``; ``standard``, its name in the image models before the registry was
    shared, is an alias)."""

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__()
        shape = _shape(shape)
        self.register_buffer("loc", torch.zeros(shape))
        self.register_buffer("scale", torch.ones(shape))

    def forward(self) -> Independent:
        return diagonal_normal(self.loc, self.scale, self.loc.dim(), standard=True)


PRIORS.alias("standard", "normal")


@PRIORS.register("gaussian")
class DiagonalGaussian(Prior):
    """N(μ, diag σ²) with learnable (or fixed) μ and log σ² — the learned Gaussian prior of App. D.3."""

    def __init__(
        self,
        shape: int | Sequence[int],
        *,
        loc: float | Tensor = 0.0,
        logvar: float | Tensor = 0.0,
        learnable: bool = True,
        std_floor: float = 1e-6,
    ) -> None:
        super().__init__()
        shape = _shape(shape)
        dtype = torch.get_default_dtype()
        try:
            loc_t = _finite_tensor(loc, "loc", dtype).expand(shape).clone()
            logvar_t = _finite_tensor(logvar, "logvar", dtype).expand(shape).clone()
        except RuntimeError:
            raise ConfigError(f"loc and logvar must be scalars or of the prior's shape "
                              f"{tuple(shape)}") from None
        _check_std_floor(std_floor)
        if learnable:
            self.loc = nn.Parameter(loc_t)
            self.logvar = nn.Parameter(logvar_t)
        else:
            self.register_buffer("loc", loc_t)
            self.register_buffer("logvar", logvar_t)
        self.std_floor = float(std_floor)

    def forward(self) -> Independent:
        return gaussian_from_mean_logvar(self.loc, self.logvar, std_floor=self.std_floor,
                                         event_ndims=self.loc.dim())


@PRIORS.register("gmm")
class GaussianMixture(Prior):
    """Σ_k π_k N(μ_k, diag σ_k²): a K-component diagonal Gaussian mixture over vectors of size ``dim``.

    Used as a learnable p(z) or q(x) (Section 5.1, Appendix D), or — with ``learnable=False`` and
    explicit parameters — as a fixed anchor. Sampling is reparameterised where that is exact (see
    :class:`~torchmim.distributions.mixture.ReparameterizedMixture`).

    Args:
        dim: event size.
        num_components: K.
        means, stds, weights: optional initial values, shapes (K, dim), (K, dim) or scalar, (K,).
            Without ``means`` they are drawn from N(0, ``init_spread``²) with the global torch RNG.
        learnable: parameters (True) or buffers (False).
        learn_weights: whether the mixing weights are learned (only with ``learnable``).
    """

    def __init__(
        self,
        dim: int | Sequence[int],
        num_components: int = 10,
        *,
        means: Tensor | Sequence | None = None,
        stds: Tensor | Sequence | float | None = None,
        weights: Tensor | Sequence | None = None,
        learnable: bool = True,
        learn_weights: bool = True,
        init_spread: float = 1.0,
        std_floor: float = 1e-6,
    ) -> None:
        super().__init__()
        if len(_shape(dim)) != 1:
            raise ValueError(f"GaussianMixture is over vectors; got event shape {tuple(_shape(dim))}")
        dim, k = _shape(dim)[0], num_components
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"num_components must be a positive integer, got {k!r}")
        if isinstance(init_spread, bool) or not isinstance(init_spread, (int, float)) or not (
                math.isfinite(init_spread) and init_spread >= 0):
            raise ConfigError(f"init_spread must be a finite number >= 0, got {init_spread!r}")
        _check_std_floor(std_floor)
        dtype = torch.get_default_dtype()
        mu = (_finite_tensor(means, "means", dtype) if means is not None
              else init_spread * torch.randn(k, dim))
        if mu.shape != (k, dim):
            raise ConfigError(f"means must have shape ({k}, {dim}), got {tuple(mu.shape)}")
        sd = _finite_tensor(1.0 if stds is None else stds, "stds", dtype)
        try:
            sd = sd.expand(k, dim).clone()
        except RuntimeError:
            raise ConfigError(f"stds must be a number or of shape ({k}, {dim}), got shape "
                              f"{tuple(sd.shape)}") from None
        if not (sd > 0).all():
            raise ConfigError(f"stds must be positive, got {reprlib.repr(stds)}")
        w = (torch.full((k,), 1.0 / k) if weights is None
             else _finite_tensor(weights, "weights", dtype))
        if w.shape != (k,) or (w < 0).any() or not w.sum() > 0:
            raise ConfigError(f"weights must be {k} non-negative numbers with a positive sum, got "
                             f"{reprlib.repr(w.tolist())}")
        logits = torch.log(w / w.sum())
        logvar = 2 * torch.log(sd)
        register = (lambda n, t: setattr(self, n, nn.Parameter(t))) if learnable else self.register_buffer
        register("loc", mu)
        register("logvar", logvar)
        if learnable and learn_weights:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)
        self.std_floor = float(std_floor)

    @property
    def num_components(self) -> int:
        return self.logits.shape[0]

    def forward(self) -> ReparameterizedMixture:
        components = gaussian_from_mean_logvar(self.loc, self.logvar, std_floor=self.std_floor)
        return ReparameterizedMixture(Categorical(logits=self.logits, validate_args=False), components)
