"""Checks across the sections of a run config, made when it is read, before any work.

Each config class checks its own options in ``__post_init__`` (types, ranges). Some mistakes
show only when two sections meet: a KSG ``k`` of 5 on a data set of 3 test points, a k-NN
classifier with more neighbours than training codes. Unchecked, they would surface after
training, in the evaluation, and the trained model would not be saved. :func:`check_run_config`
finds them from the configs alone (no data is loaded), so ``torchmim train`` refuses them at once.

Not checked here: the model's input size against the data's. A config may be a template (print
one with ``torchmim config -s data.name=gmm20d``, then set ``model.x_dim``), and ``run()``
compares the two right after loading the data, before training.
"""

from __future__ import annotations

from typing import Any

from .config import check_number
from .errors import ConfigError
from .precision import check_model_config

__all__ = ["check_run_config"]


def _size(data: Any, *names: str) -> tuple[str, int] | None:
    """The first of ``names`` that the data config sets to an integer (its name and value)."""
    for name in names:
        value = getattr(data, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return name, value
    return None


def check_run_config(config: Any) -> None:
    """Raise a one-line :class:`~torchmim.errors.ConfigError` for options of a
    :class:`~torchmim.runs.RunConfig` that contradict each other (see the module docs).

    Data sizes are read from the data config's ``n_test`` and ``n_train_eval`` (else
    ``n_train``: the toy data sets draw their k-NN training set with ``n_train`` points); a data
    set that does not say (``None``: all of a file) is not checked.
    """
    ev, data = config.eval, config.data
    check_model_config(config.model, config.train.precision)  # e.g. a flow prior with bf16
    check_model_config(config.model, config.eval.nll_precision, "eval.nll_precision")
    if config.init is not None:
        check_number(config.init.epochs, "init.epochs", low=1, integer=True)
    test = _size(data, "n_test")
    if test is not None:
        name, n = test
        n = min(n, ev.max_points)
        where = f"data.{name}={test[1]}" + (f" (eval.max_points={ev.max_points})"
                                            if ev.max_points < test[1] else "")
        if ev.mi and ev.ksg_k >= n:
            raise ConfigError(f"eval.ksg_k={ev.ksg_k} needs at least {ev.ksg_k + 1} test points, "
                              f"but {where} gives {n}; lower eval.ksg_k or set eval.mi=false")
        if n < 2:
            raise ConfigError(f"the evaluation needs at least 2 test points (the latent activity "
                              f"is a variance), but {where} gives {n}")
    train = _size(data, "n_train_eval", "n_train")
    if train is not None:
        name, n = train
        n = min(n, ev.max_points)
        for key, k in [("knn_k", ev.knn_k)] + [(f"extra_knn_k[{i}]", k)
                                               for i, k in enumerate(ev.extra_knn_k)]:
            if k > n:
                raise ConfigError(f"eval.{key}={k} is more neighbours than the {n} training codes "
                                  f"of the k-NN classifier (data.{name}={train[1]})")
