"""The results page: one HTML file with the tables and figures of every finished sweep in a folder.

``torchmim report RESULTS_DIR`` finds every ``sweep.json`` below RESULTS_DIR and writes
``RESULTS_DIR/index.html``: per sweep its description, what the paper shows, the mode and wall-clock
time, the mean ± standard deviation table over seeds, the MIM-vs-VAE comparisons where both were run,
and the figures (linked relative to the page, so the folder can be moved or served as is).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["build_report", "claims"]

_METRIC_NAMES = {"mi": "MI (nats) ↑", "nll": "NLL (nats) ↓", "recon_rmse": "recon. error ↓",
                 "knn_acc": "5-NN acc. ↑"}
_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
.meta { color: #555; font-size: .9em; } .ok { color: #1a7f37; } .bad { color: #c62828; }
"""


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}g}" if abs(v) >= 1000 or (0 < abs(v) < 1e-3) else f"{v:.{digits}f}"
    return html.escape(str(v))


def claims(summary: Sequence[dict[str, Any]], keys: str | Sequence[str] | None,
           group: str) -> list[tuple[str, bool]]:
    """MIM-vs-VAE comparisons wherever both were run with the same values of ``keys`` (the grid keys
    other than the seed and ``group``; one key or a list): the paper's four claims. A-MIM counts as
    the MIM side."""
    if group != "objective.name":
        return []
    keys = [keys] if isinstance(keys, str) else [k for k in (keys or []) if k != group]
    side = {"mim": "mim", "amim": "mim", "vae": "vae"}
    by = {(tuple(e.get(k) for k in keys), side.get(e[group])): e for e in summary}
    out = []
    for (xv, g), mim in by.items():
        if g != "mim" or (xv, "vae") not in by:
            continue
        vae = by[(xv, "vae")]
        where = ", ".join(f"{k.split('.')[-1]} = {v}" for k, v in zip(keys, xv)) + (": " if keys else "")
        for metric, better, text in (("mi", "higher", "MIM has higher MI"),
                                     ("knn_acc", "higher", "MIM has higher 5-NN accuracy"),
                                     ("recon_rmse", "lower", "MIM reconstructs better"),
                                     ("nll", "vae", "VAE has the better NLL")):
            if f"{metric}_mean" not in mim:
                continue
            m, v = mim[f"{metric}_mean"], vae[f"{metric}_mean"]
            ok = (m > v) if better == "higher" else (m < v) if better == "lower" else (v < m)
            out.append((f"{where}{text} (MIM {_fmt(m)} ± {_fmt(mim[metric + '_std'])}, VAE "
                        f"{_fmt(v)} ± {_fmt(vae[metric + '_std'])})", ok))
    return out


def _sweep_section(folder: Path, root: Path) -> str:
    from .experiments.runner import read_csv

    state = json.loads((folder / "sweep.json").read_text())
    spec = state.get("spec", {})
    name = html.escape(state.get("name", folder.name))
    parts = [f'<h2 id="{name}">{name} <span class="meta">({html.escape(state.get("mode", ""))} '
             "mode)</span></h2>"]
    if spec.get("description"):
        parts.append(f"<p>{html.escape(spec['description'])}</p>")
    if spec.get("paper"):
        parts.append(f"<p><b>Paper:</b> {html.escape(spec['paper'])}</p>")
    wall = state.get("wall_seconds", 0.0)
    parts.append(f'<p class="meta">{state.get("finished", 0)} of {state.get("cells", "?")} cells '
                 f"finished, {state.get('failed', 0)} failed; wall-clock {wall / 60:.1f} min; folder "
                 f"<code>{html.escape(str(folder.relative_to(root)) or '.')}</code></p>")
    summary_file = folder / "summary.csv"
    if summary_file.is_file():
        summary = read_csv(summary_file)
        grid = [k for k in spec.get("grid", {}) if k != "seed"]
        metrics = spec.get("metrics", list(_METRIC_NAMES))
        head = "".join(f'<th class="l">{html.escape(k)}</th>' for k in grid) + "<th>seeds</th>"
        head += "".join(f"<th>{html.escape(_METRIC_NAMES.get(m, m))}</th>" for m in metrics)
        body = []
        for e in summary:
            cells = "".join(f'<td class="l">{_fmt(e.get(k))}</td>' for k in grid)
            cells += f"<td>{e.get('n', '')}</td>"
            cells += "".join(f"<td>{_fmt(e.get(m + '_mean'))} ± {_fmt(e.get(m + '_std'), 2)}</td>"
                             for m in metrics)
            body.append(f"<tr>{cells}</tr>")
        parts.append(f"<table><tr>{head}</tr>{''.join(body)}</table>")
        group = spec.get("group", "objective.name")
        checks = claims(summary, [k for k in grid if k != group], group)
        if checks:
            n_ok = sum(ok for _, ok in checks)
            parts.append(f"<details><summary>The paper's claims: {n_ok} of {len(checks)} hold on "
                         "these means</summary><ul>")
            parts += [f'<li class="{"ok" if ok else "bad"}">{"✔" if ok else "✘"} '
                      f"{html.escape(t)}</li>" for t, ok in checks]
            parts.append("</ul></details>")
    for fig in spec.get("figures", []):
        path = folder / fig["file"]
        if path.is_file() and path.suffix == ".md":  # a text table (the image sweeps' Tables 1, 2)
            parts.append(f"<pre>{html.escape(path.read_text())}</pre>")
        elif path.is_file():
            rel = html.escape(str(path.relative_to(root)))
            parts.append(f'<p><img src="{rel}" alt="{html.escape(fig["file"])}"></p>')
    for file, why in state.get("skipped_figures", {}).items():
        parts.append(f'<p class="meta">{html.escape(file)} not drawn: {html.escape(why)}</p>')
    failures = folder / "failures.json"
    if failures.is_file():
        failed = json.loads(failures.read_text())
        if failed:
            items = "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>"
                            for k, v in failed.items())
            parts.append(f"<details><summary>{len(failed)} failed cells</summary><ul>{items}</ul>"
                         "</details>")
    return "\n".join(parts)


def build_report(results_dir: str | Path, out_file: str | Path | None = None) -> Path:
    """Write the HTML results page for every sweep below ``results_dir``; returns its path.

    Image links are relative to ``results_dir``, so write the page inside it (the default,
    ``results_dir/index.html``) unless you copy the figures too.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise ConfigError(f"results folder not found: {root}")
    folders = sorted(p.parent for p in root.rglob("sweep.json"))
    if not folders:
        raise ConfigError(f"no sweep results (sweep.json) below {root}; run `torchmim sweep NAME "
                          f"--out {root}/NAME` first")
    out = Path(out_file) if out_file is not None else root / "index.html"
    toc = "".join(f'<li><a href="#{html.escape(f.name)}">{html.escape(f.name)}</a></li>'
                  for f in folders)
    sections = "\n".join(_sweep_section(f, root) for f in folders)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>torchmim results</title>"
            f"<style>{_CSS}</style></head><body><h1>torchmim results</h1>"
            f"<p class='meta'>Sweeps found below <code>{html.escape(str(root))}</code>. MIM is blue, "
            f"VAE red; shaded bands are ±1 standard deviation over seeds.</p><ul>{toc}</ul>"
            f"{sections}</body></html>\n")
    out.write_text(page)
    return out
