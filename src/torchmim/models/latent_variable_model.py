"""One latent-variable model object: encoder q(z|x), decoder p(x|z), latent prior p(z), data prior q(x).

It defines the two joints of the paper (Section 4),

    q_θ(x, z) = q_θ(z|x) q_θ(x)        p_θ(x, z) = p_θ(x|z) p_θ(z),

and the latent anchor P(z) used by symmetric MIM (by default the model prior p(z) itself, as in the
paper's experiments). Its ``forward`` computes no loss: objectives (:mod:`torchmim.objectives`) are
functions of a model and a batch.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..distributions.conditional import tiled_log_prob
from ..distributions.marginal import MarginalDataPrior
from ..distributions.priors import Path, Prior
from ..errors import DataError, StateDictError
from ..fast_paths import FAST_PATHS
from ..layers import eval_mode
from ..networks import MLP

if TYPE_CHECKING:  # pragma: no cover
    from .configs import ModelConfig

__all__ = ["MAP_BATCH_SIZE", "JointTerms", "LatentVariableModel"]

#: Observations (or latents) per forward pass of the user-facing maps ``encode``/``decode``/...
MAP_BATCH_SIZE = 4096


@dataclass
class JointTerms:
    """Per-sample log-densities (shape ``(batch,)``) at a batch of (x, z) pairs.

    ``log_px_z`` = log p(x|z), ``log_pz`` = log p(z), ``log_qz_x`` = log q(z|x), ``log_qx`` = log q(x)
    (``None`` where an objective does not use a term).
    """

    log_px_z: Tensor
    log_pz: Tensor | None = None
    log_qz_x: Tensor | None = None
    log_qx: Tensor | None = None

    @property
    def log_p_joint(self) -> Tensor:
        """log p(x, z) = log p(x|z) + log p(z)."""
        return self.log_px_z + self.log_pz

    @property
    def log_q_joint(self) -> Tensor:
        """log q(x, z) = log q(z|x) + log q(x)."""
        return self.log_qz_x + self.log_qx

    def means(self) -> dict[str, float]:
        """Batch means of the available terms (for logging)."""
        return {k: float(v.detach().mean()) for k, v in vars(self).items() if v is not None}


class LatentVariableModel(nn.Module):
    """Encoder, decoder and priors of a MIM / VAE model.

    Args:
        encoder: module with ``encoder(x) -> Distribution`` over z (q(z|x)).
        decoder: module with ``decoder(z) -> Distribution`` over x (p(x|z)).
        prior: :class:`~torchmim.distributions.Prior` over z (p(z)).
        data_prior: :class:`~torchmim.distributions.Prior` over x (q(x)); defaults to the marginal
            of Eq. (16).
        latent_anchor: the anchor P(z) sampled by symmetric MIM; ``None`` uses the prior p(z).
        x_shape, z_shape: event shapes of one observation and one latent.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: Prior,
        data_prior: Prior | None = None,
        *,
        x_shape: tuple[int, ...] | int,
        z_shape: tuple[int, ...] | int,
        latent_anchor: Prior | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.data_prior = data_prior if data_prior is not None else MarginalDataPrior()
        self.latent_anchor = latent_anchor
        self.x_shape = (x_shape,) if isinstance(x_shape, int) else tuple(x_shape)
        self.z_shape = (z_shape,) if isinstance(z_shape, int) else tuple(z_shape)
        self.config: ModelConfig | None = None  # set by build_model; used by save_model
        for density in (self.prior, self.data_prior, self.latent_anchor):
            if density is not None:
                density.bind(self)

    # ------------------------------------------------------------------ input checks
    def _check(self, t: Any, shape: tuple[int, ...], name: str) -> Tensor:
        if not isinstance(t, Tensor):
            raise DataError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != shape:
            want = ", ".join(["batch", *map(str, shape)])
            raise DataError(f"{name} has shape {tuple(t.shape)}, but the model expects ({want})")
        if not t.is_floating_point():
            raise DataError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        return t

    def check_x(self, x: Any, name: str = "x") -> Tensor:
        """Raise :class:`~torchmim.errors.DataError` unless ``x`` is a float batch of observations."""
        return self._check(x, self.x_shape, name)

    def check_z(self, z: Any, name: str = "z") -> Tensor:
        """Raise :class:`~torchmim.errors.DataError` unless ``z`` is a float batch of latents."""
        return self._check(z, self.z_shape, name)

    def _param_like(self) -> tuple[torch.device, torch.dtype]:
        for p in self.parameters():
            return p.device, p.dtype
        return torch.device("cpu"), torch.get_default_dtype()  # pragma: no cover - no parameters

    def _prepare(self, data: Any, shape: tuple[int, ...], name: str) -> Tensor:
        if isinstance(data, (list, tuple)):  # plain numbers carry no dtype intent
            try:
                data = np.asarray(data, dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise DataError(f"{name} is not a numeric array ({str(e).splitlines()[0]})") from None
        if not isinstance(data, Tensor):
            try:
                data = torch.as_tensor(np.asarray(data))
            except (TypeError, ValueError, RuntimeError) as e:
                raise DataError(f"{name} is not a numeric array ({str(e).splitlines()[0]})") from None
        device, dtype = self._param_like()
        from ..data.loading import CASTABLE_DTYPES

        if data.dtype in CASTABLE_DTYPES:  # integers, booleans: cast, as Trainer.fit does
            data = data.to(dtype=dtype)
        self._check(data, shape, name)
        data = data.to(device=device, dtype=dtype)
        if not torch.isfinite(data).all():
            rows = (~torch.isfinite(data)).reshape(data.shape[0], -1).any(1).nonzero().flatten()
            raise DataError(f"{name} contains NaN or Inf in {len(rows)} row(s), first at row "
                            f"{int(rows[0])}")
        return data

    def prepare_x(self, x: Any, name: str = "x") -> Tensor:
        """``x`` (a tensor or NumPy array of any float, integer or boolean dtype, nested lists) as
        a checked batch of observations in the model's dtype and on its device; one-line
        :class:`~torchmim.errors.DataError` for a wrong shape, a non-numeric (e.g. complex) dtype
        or NaN/Inf.

        Integer and boolean arrays are cast to float, exactly as ``Trainer.fit`` and the ``file``
        data set take them (binary data often come as uint8 or bool 0/1), so a model encodes
        the arrays it was trained on. The values are taken as they are: pixels in 0..255 are not
        rescaled to [0, 1] (as float pixels in 0..255 would not be).
        """
        return self._prepare(x, self.x_shape, name)

    def prepare_z(self, z: Any, name: str = "z") -> Tensor:
        """``z`` as a checked batch of latents in the model's dtype and device (see :meth:`prepare_x`)."""
        return self._prepare(z, self.z_shape, name)

    # ------------------------------------------------------------------ the densities
    def posterior(self, x: Tensor) -> Distribution:
        """The encoder q(z|x)."""
        return self.encoder(self.check_x(x))

    def likelihood(self, z: Tensor) -> Distribution:
        """The decoder p(x|z)."""
        return self.decoder(self.check_z(z))

    def latent_prior(self) -> Distribution:
        """The latent prior p(z)."""
        return self.prior()

    def data_distribution(self) -> Distribution:
        """The data prior q(x) (for the marginal of Eq. 16, an importance-sampled ``log_prob``)."""
        return self.data_prior()

    def anchor(self, pz: Distribution | None = None) -> Distribution:
        """The latent anchor P(z) that symmetric MIM samples (the prior p(z) unless set; ``pz``, an
        already built p(z), is then returned as is)."""
        if self.latent_anchor is not None:
            return self.latent_anchor()
        return self.prior() if pz is None else pz

    def forward(self, x: Tensor) -> Distribution:
        """q(z|x); the model's forward computes no loss."""
        return self.posterior(x)

    # ------------------------------------------------------------------ user-facing maps
    # encode / decode / reconstruct / sample are for *using* a model: they take array-likes, run in
    # eval mode without autograd, in batches of ``batch_size``, and return tensors on the model's
    # device. ``grad=True`` keeps the model's mode and autograd (reparameterised samples where the
    # distribution allows); objectives use the distributions ``posterior(x)`` / ``likelihood(z)``.
    @contextlib.contextmanager
    def _map_mode(self, grad: bool) -> Iterator[None]:
        if grad:
            yield
            return
        with eval_mode(self), torch.no_grad():
            yield

    @staticmethod
    def _draw(dist: Distribution, sample: bool, grad: bool) -> Tensor:
        if not sample:
            return dist.mean
        return dist.rsample() if grad and dist.has_rsample else dist.sample()

    def _batched(self, fn: Callable[[Tensor], Tensor], t: Tensor, batch_size: int, grad: bool
                 ) -> Tensor:
        if (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                or batch_size < 1):
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        batch_size = int(batch_size)
        with self._map_mode(grad):
            parts = [fn(t[i : i + batch_size]) for i in range(0, t.shape[0], batch_size)] or [fn(t)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def encode(self, x: Any, *, sample: bool = False, grad: bool = False,
               batch_size: int = MAP_BATCH_SIZE) -> Tensor:
        """Posterior mean E[z|x] (default) or one sample z ∼ q(z|x), shape ``(N, *z_shape)``.

        ``x``: observations ``(N, *x_shape)`` as a tensor of any float dtype, a NumPy array or lists.
        Runs in eval mode without gradients (``grad=True``: differentiable, mode unchanged).
        """
        xt = self.prepare_x(x)
        return self._batched(lambda b: self._draw(self.posterior(b), sample, grad), xt,
                             batch_size, grad)

    def decode(self, z: Any, *, sample: bool = False, grad: bool = False,
               batch_size: int = MAP_BATCH_SIZE) -> Tensor:
        """Decoder mean E[x|z] (default) or one sample x ∼ p(x|z) (inputs as for :meth:`encode`)."""
        zt = self.prepare_z(z)
        return self._batched(lambda b: self._draw(self.likelihood(b), sample, grad), zt,
                             batch_size, grad)

    def reconstruct(self, x: Any, *, sample: bool = False, grad: bool = False,
                    batch_size: int = MAP_BATCH_SIZE) -> Tensor:
        """x → z → x̃ through the means (default) or through samples z ∼ q(z|x), x̃ ∼ p(x|z)."""
        xt = self.prepare_x(x)

        def rec(b: Tensor) -> Tensor:
            z = self._draw(self.posterior(b), sample, grad)
            return self._draw(self.likelihood(z), sample, grad)

        return self._batched(rec, xt, batch_size, grad)

    def sample(
        self, num_samples: int, *, mean: bool = False, return_latent: bool = False,
        grad: bool = False, batch_size: int = MAP_BATCH_SIZE,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Draw z ∼ p(z), then x ∼ p(x|z) (or its mean with ``mean=True``); no gradients unless
        ``grad=True``."""
        if (isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral)
                or num_samples < 0):
            raise DataError(f"num_samples must be a non-negative integer, got {num_samples!r}")
        num_samples = int(num_samples)
        with self._map_mode(grad):
            pz = self.prior()
            z = pz.rsample((num_samples,)) if grad and pz.has_rsample else pz.sample((num_samples,))
        x = self._batched(lambda b: self._draw(self.likelihood(b), not mean, grad), z,
                          batch_size, grad)
        return (x, z) if return_latent else x

    # ------------------------------------------------------------------ log-densities
    def log_p_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x, z) = log p(x|z) + log p(z), per sample."""
        return self.likelihood(z).log_prob(x) + self.prior().log_prob(z)

    def log_q_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log q(x, z) = log q(z|x) + log q(x), per sample (q(x) as ``data_distribution()``)."""
        return self.posterior(x).log_prob(z) + self.data_distribution().log_prob(x)

    def terms(
        self,
        x: Tensor,
        z: Tensor,
        *,
        path: Path,
        qz_x: Distribution | None = None,
        px_z: Distribution | None = None,
        pz: Distribution | None = None,
        data_prior: bool = True,
    ) -> JointTerms:
        """All four log-densities at (x, z), with log q(x) estimated for the given anchored ``path``.

        ``qz_x`` / ``px_z`` / ``pz`` may be passed when the caller already has them: building p(z)
        of a VampPrior runs the encoder on all its pseudo-inputs, so an objective builds it once.
        """
        qz_x = self.posterior(x) if qz_x is None else qz_x
        px_z = self.likelihood(z) if px_z is None else px_z
        pz = self.prior() if pz is None else pz
        log_qz_x = qz_x.log_prob(z)
        log_px_z = px_z.log_prob(x)
        log_pz = pz.log_prob(z)
        log_qx = (
            self.data_prior.anchored_log_prob(
                x, path=path, log_px_z=log_px_z, log_pz=log_pz, log_qz_x=log_qz_x
            )
            if data_prior
            else None
        )
        return JointTerms(log_px_z=log_px_z, log_pz=log_pz, log_qz_x=log_qz_x, log_qx=log_qx)

    def log_marginal_likelihood(
        self, x: Tensor, num_samples: int = 1000, *, max_pairs: int = 65536,
        block_pairs: int | None = None, pz: Distribution | None = None,
    ) -> Tensor:
        """Importance-sampled log p(x) per example, with q(z|x) as proposal:

            log p(x) ≈ logsumexp_s [log p(x|z_s) + log p(z_s) − log q(z_s|x)] − log S,  z_s ∼ q(z|x).

        The encoder runs once on ``x``. The S samples are drawn in chunks of at most ``max_pairs``
        (x, z) pairs, combined with a running logsumexp, so memory does not grow with S; within a
        chunk the decoder runs on blocks of about ``block_pairs`` pairs (default
        ``_decoder_block_pairs()``: 2¹⁶ activations of the decoder's widest linear layer, small
        enough to stay in the CPU caches, or for an MLP decoder, which blocks its hidden layers
        itself, 2¹⁸ of its outputs; 256 to 65536 pairs). Blocking does not change the random
        draws: the estimate equals the unblocked one up to float rounding. ``pz``: the prior p(z)
        if the caller already built it (:func:`torchmim.metrics.importance_sampled_nll` builds it
        once for all its batches; a VampPrior runs the encoder on its K pseudo-inputs to build
        it).
        """
        if block_pairs is None:
            block_pairs = self._decoder_block_pairs()
        for name, value in (("num_samples", num_samples), ("max_pairs", max_pairs),
                            ("block_pairs", block_pairs)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise DataError(f"{name} must be a positive integer, got {value!r}")
        num_samples, max_pairs, block_pairs = int(num_samples), int(max_pairs), int(block_pairs)
        if not torch.isfinite(self.check_x(x)).all():
            raise DataError("x contains NaN or Inf: its log-likelihood is undefined")
        qz_x = self.posterior(x)
        pz = self.prior() if pz is None else pz
        batch = x.shape[0]
        chunk = max(1, min(num_samples, max_pairs // max(batch, 1)))
        s_block = max(1, block_pairs // max(batch, 1))  # samples per decoder call

        def log_px_z(z: Tensor) -> Tensor:  # z (s, batch, *z_shape) → (s, batch), one decoder call
            s = z.shape[0]  # flattened to one batch dimension, which every decoder accepts
            return tiled_log_prob(self.decoder, x, z.reshape((s * batch,) + self.z_shape)
                                  ).reshape(s, batch)

        total = torch.full((batch,), -math.inf, device=x.device, dtype=x.dtype)
        done = 0
        while done < num_samples:
            s = min(chunk, num_samples - done)
            z = qz_x.sample((s,))  # (s, batch, *z_shape): the same draws as without blocking
            log_w = (torch.cat([log_px_z(z[i:i + s_block]) for i in range(0, s, s_block)])
                     + pz.log_prob(z) - qz_x.log_prob(z))
            total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
            done += s
        return total - math.log(num_samples)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> Any:
        """``nn.Module.load_state_dict``, with a one-line
        :class:`~torchmim.errors.StateDictError` (a ``RuntimeError`` too) when the weights do not
        fit: the numbers of missing keys, unexpected keys and shape mismatches, each with its
        first few names, instead of torch's message of one line per key."""
        if not isinstance(state_dict, Mapping):
            raise StateDictError(f"a state_dict must be a mapping of names to tensors, got "
                                 f"{type(state_dict).__name__}")
        try:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        except RuntimeError as e:
            raise StateDictError(_describe_mismatch(self.state_dict(), state_dict, strict, e)
                                 ) from None

    def _decoder_block_pairs(self) -> int:
        """Decoder batch of the IS-NLL, 256 to 65536 pairs: about 2¹⁶ activations of the widest
        linear layer (cache sized; measured at widths 5 to 500 on the benchmark machine). An
        :class:`~torchmim.networks.MLP` blocks its hidden layers itself (``FAST_PATHS.
        inference_blocks``), so only its outputs count, at 2¹⁸ floats: the likelihood's
        log-density then runs on large blocks (65,536 pairs for the toy decoder's 4 outputs,
        6,553 for fig4's 40; ``bench/toy_fast_paths.py --only nll`` times the IS-NLL against the
        256–1,638-pair blocks before)."""
        inner: set[int] = set()
        pairs = [65536]
        for m in self.decoder.modules():
            if isinstance(m, MLP) and FAST_PATHS.inference_blocks:
                inner.update(id(sub) for sub in m.modules())
                pairs.append((1 << 18) // m.out_features)
            elif isinstance(m, nn.Linear) and id(m) not in inner:
                pairs.append((1 << 16) // m.out_features)
        return max(256, min(pairs))

    def initialize_from_data(self, x: Tensor) -> None:
        """Data-dependent initialisation before training (e.g. VampPrior pseudo-inputs from training
        images): calls ``initialize_from_data(x)`` on every submodule that defines it."""
        for module in self.modules():
            if module is not self and hasattr(module, "initialize_from_data"):
                module.initialize_from_data(x)

    @property
    def num_parameters(self) -> int:
        """Number of trainable parameters (shared modules counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _names(keys: list[str], first: int = 3) -> str:
    more = f", ... ({len(keys) - first} more)" if len(keys) > first else ""
    return ", ".join(keys[:first]) + more


def _describe_mismatch(own: Mapping[str, Any], given: Mapping[str, Any], strict: bool,
                       error: BaseException) -> str:
    """One line: what differs between the model's ``own`` state and the ``given`` one."""
    missing = [k for k in own if k not in given] if strict else []
    unexpected = [k for k in given if k not in own] if strict else []
    shapes = [f"{k} (saved {tuple(given[k].shape)}, model {tuple(v.shape)})" for k, v in own.items()
              if k in given and isinstance(given[k], Tensor) and isinstance(v, Tensor)
              and given[k].shape != v.shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_names(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} tensor(s) of another shape: {_names(shapes)}")
    if not parts:  # something else (a hook of a submodule): torch's message, on one line
        parts.append(" ".join(str(error).split()))
    return "weights do not fit the model: " + "; ".join(parts)
