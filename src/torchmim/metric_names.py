"""Display names of the evaluation metrics: one entry per metric key, for all tables and figures.

Its own module, importing only the standard library, rather than in :mod:`torchmim.metrics`
(numerical code, torch) or :mod:`torchmim.figures` (matplotlib): the results page, the figures
and the scripts that print tables all label the same metric keys, and each should import the
names without the others' weight.

Each metric has a table label (``"NLL"``), a unit (``"nats"``) and the direction that is better
(``"higher"``/``"lower"``, drawn as ↑/↓); a figure title, a narrow column header and a claims-table
header where those are worded differently. :func:`metric_label` composes the string of one style;
a key without an entry is shown as itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["METRICS", "STYLES", "MetricName", "metric_label"]

Style = Literal["table", "figure", "short", "claims"]
#: ``table``: the results page's headers (label, unit, arrow); ``figure``: a sweep figure's panel
#: title (title, arrow); ``short``: a narrow column header (scripts/summary_table.py);
#: ``claims``: a claims table's header (label and unit, no arrow; scripts/claims_table.py).
STYLES: tuple[str, ...] = ("table", "figure", "short", "claims")
_ARROWS = {"higher": " ↑", "lower": " ↓", None: ""}


@dataclass(frozen=True)
class MetricName:
    """How one metric is shown. ``title``, ``short`` and ``claims`` default to the label (with the
    unit for ``title`` and ``claims``) where they are not worded differently."""

    label: str
    unit: str | None = None
    better: Literal["higher", "lower"] | None = None
    title: str | None = None
    short: str | None = None
    claims: str | None = None

    def text(self, style: Style) -> str:
        """The name in ``style`` (one of :data:`STYLES`)."""
        with_unit = f"{self.label} ({self.unit})" if self.unit else self.label
        arrow = _ARROWS[self.better]
        if style == "table":
            return with_unit + arrow
        if style == "figure":
            return (self.title or with_unit) + arrow
        if style == "short":
            return self.short or self.label
        if style == "claims":
            return self.claims or with_unit
        raise _bad_style(style)


def _bad_style(style: str) -> ValueError:
    return ValueError(f"unknown metric name style {style!r}; one of {', '.join(STYLES)}")


_RECON = MetricName("recon. error", better="lower", short="recon",
                    # the paper's "RMSE" is a mean norm with sampled reconstructions
                    title="reconstruction error, mean ‖x − x̃‖")

#: metric key → its display names (every key a table or figure labels)
METRICS: dict[str, MetricName] = {
    "mi": MetricName("MI", "nats", "higher", title="mutual information (KSG, nats)", short="MI"),
    "mi_standardized": MetricName("MI, KSG on standardised x, z", "nats", "higher",
                                  title="MI, KSG on standardised x, z", short="MI std.",
                                  claims="MI, standardised"),
    "mi_rank": MetricName("MI, KSG on ranks", "nats", "higher", title="MI, KSG on ranks of x, z",
                          short="MI rank", claims="MI, ranks"),
    "consistency_x": MetricName("consistency in x", "energy distance", "lower",
                                title="consistency in x (energy dist.)", short="cons. x",
                                claims="consistency x"),
    "consistency_z": MetricName("consistency in z", "energy distance", "lower",
                                title="consistency in z (energy dist.)", short="cons. z",
                                claims="consistency z"),
    "nll": MetricName("NLL", "nats", "lower", title="test NLL (nats)"),
    "recon_rmse": _RECON,  # the old key of recon_error, same meaning
    "recon_error": _RECON,
    "recon_mean_rmse": MetricName("recon. RMSE (means)", better="lower",
                                  title="reconstruction RMSE (means)"),
    "knn_acc": MetricName("5-NN acc.", better="higher", title="5-NN accuracy", short="5-NN"),
    **{f"knn_acc_k{k}": MetricName(f"{k}-NN acc.", better="higher", title=f"{k}-NN accuracy",
                                   short=f"{k}-NN") for k in (1, 3, 10)},
    "posterior_var": MetricName("mean posterior variance"),
    "active_units": MetricName("active units"),
}


def metric_label(key: str, style: Style = "table") -> str:
    """The display name of metric ``key`` in ``style`` (see :data:`STYLES`); ``key`` itself for a
    metric without an entry in :data:`METRICS`."""
    if style not in STYLES:
        raise _bad_style(style)
    name = METRICS.get(key)
    return key if name is None else name.text(style)
