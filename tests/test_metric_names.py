"""The metrics' display names (torchmim.metric_names), the one table every results table and
figure reads its headers and titles from."""

from __future__ import annotations

import pytest

from torchmim.experiments import EXPERIMENTS
from torchmim.experiments.statistics import PAPER_CLAIMS
from torchmim.metric_names import METRICS, STYLES, metric_label


def _used_metrics() -> set[str]:
    keys = set(PAPER_CLAIMS)
    for name in EXPERIMENTS.names():
        spec = EXPERIMENTS.get(name)()
        keys |= set(spec.metrics) | set(spec.claims or {})
    return keys


def test_every_metric_a_sweep_reports_or_claims_has_a_name():
    """Catches a metric added to a registered sweep (its metrics or claims) or to PAPER_CLAIMS
    without a display name: the results page and figures would show the raw key."""
    missing = sorted(_used_metrics() - METRICS.keys())
    assert not missing, f"no display name for {missing}: add them to torchmim/metric_names.py"


@pytest.mark.parametrize("style, expected", [
    ("table", "NLL (nats) ↓"), ("figure", "test NLL (nats) ↓"), ("short", "NLL"),
    ("claims", "NLL (nats)")])
def test_styles_compose_label_unit_and_direction(style, expected):
    """Catches a style losing its unit or arrow, or gaining one it never showed (the strings are
    those the report, the sweep figures and scripts/summary_table.py / claims_table.py print)."""
    assert metric_label("nll", style) == expected


def test_unknown_key_is_shown_as_itself_and_unknown_style_refused():
    """Catches a lookup that fails (KeyError) on a user's own metric, and a typo in a style name
    silently falling back to some other wording."""
    assert all(metric_label("my_metric", s) == "my_metric" for s in STYLES)
    with pytest.raises(ValueError, match="style 'html'"):
        metric_label("nll", "html")  # type: ignore[arg-type]
