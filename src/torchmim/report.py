"""The results page: one HTML file with the tables and figures of every finished sweep in a folder.

``torchmim report RESULTS_DIR`` finds every ``sweep.json`` (a sweep) and every demo folder
(``metrics.json`` + ``report.md`` of ``torchmim demo``) below RESULTS_DIR and writes
``RESULTS_DIR/index.html`` (or ``--out FILE``): per sweep its description, what the paper shows, the
mode and wall-clock time, the mean ± standard deviation table over seeds (the mean alone for one
seed), the MIM-vs-VAE comparisons where both were run, and the figures. Image links are relative to
the page's own folder, so the page works wherever it is written and the tree can be moved as a whole.

A sweep's ``claims.csv``/``claims.md`` (the paper's claims tested seed by seed, see
:mod:`torchmim.experiments.statistics`) are regenerated from its ``results.csv`` and shown: running
``torchmim report`` on an existing folder updates them without rerunning anything.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import ConfigError
from .metric_names import metric_label

__all__ = ["build_report", "claims"]

_HEADLINE = ("mi", "nll", "recon_rmse", "knn_acc")  # the demo's columns, the paper's four measures
#: readable column headers of grid keys (a sweep's ``x_label`` takes precedence for its ``x``)
_KEY_LABELS = {"model.hidden": "hidden units", "model.z_dim": "latent dimension",
               "objective.name": "objective", "data.name": "data", "model.name": "model"}
_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       box-sizing: border-box; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: 1em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: .85em; max-width: 900px; }
.meta { color: #555; font-size: .9em; } .ok { color: #1a7f37; } .bad { color: #c62828; }
"""


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}g}" if abs(v) >= 1000 or (0 < abs(v) < 1e-3) else f"{v:.{digits}f}"
    if v is None:
        return "–"
    return html.escape(str(v))


def _pm(mean: Any, std: Any, n: Any, digits: int = 2) -> str:
    """``mean ± std``, or the mean alone for one seed (a "± 0.00" would claim a spread)."""
    if n == 1 or std is None or (isinstance(std, float) and math.isnan(std)):
        return _fmt(mean)
    return f"{_fmt(mean)} ± {_fmt(std, digits)}"


def column_label(key: str, spec: dict[str, Any] | None = None) -> str:
    """A readable header for a grid key: the sweep's ``x_label`` for its x, a known label, or the
    key's last part (``model.prior.name`` → ``prior``) with underscores as spaces."""
    spec = spec or {}
    if key == spec.get("x") and spec.get("x_label"):
        return str(spec["x_label"])
    if key in _KEY_LABELS:
        return _KEY_LABELS[key]
    parts = key.split(".")
    last = parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]
    return last.replace("_", " ")


def _cell_value(key: str, value: Any) -> str:
    if key == "objective.name" and isinstance(value, str):
        from .figures.style import objective_label

        return html.escape(objective_label(value))
    return _fmt(value)


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
        where = ", ".join(f"{column_label(k)} = {v}" for k, v in zip(keys, xv)) + (": " if keys else "")
        for metric, better, text in (("mi", "higher", "MIM has higher MI"),
                                     ("knn_acc", "higher", "MIM has higher 5-NN accuracy"),
                                     ("recon_rmse", "lower", "MIM reconstructs better"),
                                     ("nll", "vae", "VAE has the better NLL")):
            if f"{metric}_mean" not in mim:
                continue
            m, v = mim[f"{metric}_mean"], vae[f"{metric}_mean"]
            ok = (m > v) if better == "higher" else (m < v) if better == "lower" else (v < m)
            out.append((f"{where}{text} (MIM {_pm(m, mim.get(metric + '_std'), mim.get('n'), 3)}, "
                        f"VAE {_pm(v, vae.get(metric + '_std'), vae.get('n'), 3)})", ok))
    return out


class _Page:
    """Where the page is written: links to files are relative to its folder."""

    def __init__(self, out: Path, root: Path) -> None:
        self.dir = out.resolve().parent
        self.root = root

    def link(self, path: Path) -> str:
        """``path`` as a URL relative to the page (escaped for an HTML attribute)."""
        try:
            rel = quote(Path(os.path.relpath(path.resolve(), self.dir)).as_posix())
        except ValueError:  # another drive (Windows): no relative path exists
            rel = path.resolve().as_uri()
        return html.escape(rel)

    def image(self, path: Path, caption: str = "") -> str:
        img = f'<img src="{self.link(path)}" alt="{html.escape(path.name)}">'
        if caption:
            return f"<figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"
        return f"<p>{img}</p>"

    def where(self, folder: Path) -> str:
        rel = folder.relative_to(self.root).as_posix()
        return html.escape(str(self.root) if rel == "." else rel)


def _anchor(folder: Path, root: Path) -> str:
    rel = folder.relative_to(root).as_posix()
    return html.escape("s-" + ("root" if rel == "." else rel.replace("/", "-")))


def _claims_html(checks: list[tuple[str, bool]]) -> list[str]:
    if not checks:
        return []
    n_ok = sum(ok for _, ok in checks)
    return [f"<details><summary>The paper's claims: {n_ok} of {len(checks)} hold on these means"
            "</summary><ul>",
            *(f'<li class="{"ok" if ok else "bad"}">{"✔" if ok else "✘"} {html.escape(t)}</li>'
              for t, ok in checks),
            "</ul></details>"]


def _paired_claims_html(folder: Path, spec: dict[str, Any]) -> list[str]:
    """The sweep's claims table, regenerated from ``results.csv`` (``claims.csv``, ``claims.md``)."""
    from .errors import TorchMIMError
    from .experiments import with_current_claims
    from .experiments.statistics import format_p, side_labels, write_claims
    from .experiments.tables import read_csv

    if not (folder / "results.csv").is_file():
        return []
    spec = with_current_claims(spec)  # the paper's claims as this version states them
    try:
        table = write_claims(read_csv(folder / "results.csv"), spec, folder)
    except TorchMIMError as e:
        return [f'<p class="meta">claims not tested: {html.escape(str(e))}</p>']
    if not table:
        return []
    group = spec.get("group", "objective.name")
    by = [k for k in spec.get("grid", {}) if k not in ("seed", group)]
    a, b = ("/".join(str(v).upper() for v in side_labels(c))
            for c in spec.get("compare") or ("mim", "vae"))
    head = "".join(f'<th class="l">{html.escape(column_label(k, spec))}</th>' for k in by)
    head += (f'<th class="l">claim</th><th>pairs</th><th>{a} − {b}</th><th>95% t interval</th>'
             "<th>t-test p</th><th>Holm-adjusted p</th><th>Wilcoxon p</th>"
             "<th class=\"l\">verdict</th>")
    body = []
    for r in table:
        name = metric_label(r["metric"])
        cls = {"holds": "ok", "opposite": "bad"}.get(r["verdict"], "")
        cells = "".join(f'<td class="l">{_cell_value(k, r.get(k))}</td>' for k in by)
        claim = ("no claim" if r["claim"] is None else
                 f"{a} {'&gt;' if r['claim'] == 'higher' else '&lt;'} {b}")
        cells += (f'<td class="l">{html.escape(name)}: {claim}</td><td>{r["n"]}</td>'
                  f"<td>{_fmt(r['diff_mean'])}</td>"
                  f"<td>[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]</td>"
                  f"<td>{format_p(r['t_p'])}</td><td>{format_p(r.get('p_holm'))}</td>"
                  f"<td>{format_p(r['wilcoxon_p'])}</td>"
                  f'<td class="l {cls}">{html.escape(str(r["verdict"]))}</td>')
        body.append(f"<tr>{cells}</tr>")
    claimed = [r for r in table if r["claim"] is not None]
    n_ok = sum(r["verdict"] == "holds" for r in claimed)
    return [f"<details open><summary>Paired over seeds: {n_ok} of {len(claimed)} claims hold "
            "(95% t interval on the claimed side and paired t-test p, Holm-adjusted over the "
            "settings of each metric, &lt; 0.05; claims.csv)</summary>",
            f"<table><tr>{head}</tr>{''.join(body)}</table></details>"]


def _sweep_section(folder: Path, page: _Page) -> str:
    from .experiments.runner import read_csv

    state = json.loads((folder / "sweep.json").read_text())
    spec = state.get("spec", {})
    name = html.escape(state.get("name", folder.name))
    parts = [f'<h2 id="{_anchor(folder, page.root)}">{name} <span class="meta">'
             f'({html.escape(state.get("mode", ""))} mode)</span></h2>']
    if spec.get("description"):
        parts.append(f"<p>{html.escape(spec['description'])}</p>")
    if spec.get("paper"):
        parts.append(f"<p><b>Paper:</b> {html.escape(spec['paper'])}</p>")
    wall = state.get("wall_seconds", 0.0)
    parts.append(f'<p class="meta">{state.get("finished", 0)} of {state.get("cells", "?")} cells '
                 f"finished, {state.get('failed', 0)} failed; wall-clock {wall / 60:.1f} min; folder "
                 f"<code>{page.where(folder)}</code></p>")
    summary_file = folder / "summary.csv"
    if summary_file.is_file():
        summary = read_csv(summary_file)
        grid = [k for k in spec.get("grid", {}) if k != "seed"]
        metrics = spec.get("metrics", list(_HEADLINE))
        head = "".join(f'<th class="l" title="{html.escape(k)}">{html.escape(column_label(k, spec))}'
                       "</th>" for k in grid) + "<th>seeds</th>"
        head += "".join(f"<th>{html.escape(metric_label(m))}</th>" for m in metrics)
        body = []
        for e in summary:
            cells = "".join(f'<td class="l">{_cell_value(k, e.get(k))}</td>' for k in grid)
            cells += f"<td>{e.get('n', '')}</td>"
            cells += "".join(f"<td>{_pm(e.get(m + '_mean'), e.get(m + '_std'), e.get('n'))}</td>"
                             for m in metrics)
            body.append(f"<tr>{cells}</tr>")
        parts.append(f"<table><tr>{head}</tr>{''.join(body)}</table>")
        group = spec.get("group", "objective.name")
        parts += _claims_html(claims(summary, [k for k in grid if k != group], group))
    parts += _paired_claims_html(folder, spec)
    for fig in spec.get("figures", []):
        path = folder / fig["file"]
        if path.is_file() and path.suffix == ".md":  # a text table (the image sweeps' Tables 1, 2)
            parts.append(f"<pre>{html.escape(path.read_text())}</pre>")
        elif path.is_file():
            parts.append(page.image(path))
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


def _demo_metrics(folder: Path) -> dict[str, Any] | None:
    """The demo's metrics.json if ``folder`` holds a ``torchmim demo`` result, else None."""
    try:
        data = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and isinstance(data.get("by_width"), dict) and "settings" in data
    return data if ok else None


_DEMO_FIGURES = {
    "fig2.png": "Fig. 2-style comparison. Top: level sets of P(x) (black) and reconstructed test "
                "points (red). Bottom: one-standard-deviation ellipses of q(z|x) for 200 test "
                "points (green) and of P(z) (dashed). VAE and MIM side by side for each width.",
    "training_curves.png": "Validation loss per epoch, one panel per objective (the two losses "
                           "are on different scales); dots mark the best validation epoch.",
}


def _demo_section(folder: Path, page: _Page, metrics: dict[str, Any]) -> str:
    st = metrics.get("settings", {})
    by_width: dict[str, dict[str, dict[str, Any]]] = metrics["by_width"]
    parts = [f'<h2 id="{_anchor(folder, page.root)}">demo: MIM vs VAE on the 2D mixture '
             '<span class="meta">(torchmim demo)</span></h2>']
    if st.get("data"):
        parts.append(f"<p>Data: {html.escape(str(st['data']))}. Encoder and decoder with one "
                     "hidden layer (tanh) of the given width; the same model for MIM and VAE.</p>")
    parts.append(f'<p class="meta">one seed ({st.get("seed", "?")}); at most '
                 f'{st.get("epochs", "?")} epochs; N = {st.get("n_test", "?")} test points, '
                 f'S = {st.get("nll_samples", "?")} importance samples; wall-clock '
                 f'{float(st.get("seconds", 0.0)) / 60:.1f} min; folder '
                 f"<code>{page.where(folder)}</code></p>")
    cols = [m for m in _HEADLINE if any(m in r for w in by_width.values() for r in w.values())]
    head = ('<th class="l">hidden units</th><th class="l">objective</th>'
            + "".join(f"<th>{html.escape(metric_label(m))}</th>" for m in cols)
            + "<th>epochs (best)</th>")
    body, summary = [], []
    for w, by_obj in by_width.items():
        for obj, m in by_obj.items():
            cells = (f'<td class="l">{_fmt(w)}</td><td class="l">'
                     f"{_cell_value('objective.name', obj)}</td>")
            cells += "".join(f"<td>{_fmt(m.get(c))}</td>" for c in cols)
            cells += f"<td>{_fmt(m.get('epochs'))} ({_fmt(m.get('best_epoch'))})</td>"
            body.append(f"<tr>{cells}</tr>")
            summary.append({"model.hidden": w, "objective.name": obj, "n": 1,
                            **{f"{c}_mean": m[c] for c in cols if c in m}})
    parts.append(f"<table><tr>{head}</tr>{''.join(body)}</table>")
    parts += _claims_html(claims(summary, ["model.hidden"], "objective.name"))
    known = [folder / f for f in _DEMO_FIGURES]
    others = sorted(p for p in folder.glob("*.png") if p not in known)
    for path in known + others:
        if path.is_file():
            parts.append(page.image(path, _DEMO_FIGURES.get(path.name, "")))
    if (folder / "report.md").is_file():
        parts.append(f'<p class="meta">The demo\'s own report: <a href="'
                     f'{page.link(folder / "report.md")}">report.md</a>.</p>')
    return "\n".join(parts)


def build_report(results_dir: str | Path, out_file: str | Path | None = None) -> Path:
    """Write the HTML results page for every sweep and demo below ``results_dir``; returns its path.

    The page goes to ``out_file`` (default ``results_dir/index.html``); its image links are relative
    to the page's own folder, so they resolve wherever it is written.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise ConfigError(f"results folder not found: {root}")
    found: list[tuple[Path, dict[str, Any] | None]] = [
        (p.parent, None) for p in root.rglob("sweep.json")]
    for p in root.rglob("report.md"):
        demo = _demo_metrics(p.parent)
        if demo is not None:
            found.append((p.parent, demo))
    if not found:
        raise ConfigError(f"no sweep results (sweep.json) or demo (metrics.json, report.md) below "
                          f"{root}; run `torchmim sweep NAME --out {root}/NAME` or `torchmim demo "
                          f"--out {root}` first")
    found.sort(key=lambda item: item[0].relative_to(root).as_posix())
    out = Path(out_file) if out_file is not None else root / "index.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    page = _Page(out, root)

    def title(folder: Path, demo: dict[str, Any] | None) -> str:
        rel = folder.relative_to(root).as_posix()
        return f"{folder.name if rel == '.' else rel} ({'demo' if demo is not None else 'sweep'})"

    toc = "".join(f'<li><a href="#{_anchor(f, root)}">{html.escape(title(f, d))}</a></li>'
                  for f, d in found)
    sections = "\n".join(_demo_section(f, page, d) if d is not None else _sweep_section(f, page)
                         for f, d in found)
    note = ("; table cells are mean ± standard deviation over seeds (the mean alone for one "
            "seed), shaded bands ±1 standard deviation" if any(d is None for _, d in found) else "")
    text = (f"<!doctype html><html><head><meta charset='utf-8'><title>torchmim results</title>"
            f"<style>{_CSS}</style></head><body><h1>torchmim results</h1>"
            f"<p class='meta'>Results found below <code>{html.escape(str(root))}</code>. MIM is "
            f"blue, VAE red{note}.</p><ul>{toc}</ul>"
            f"{sections}</body></html>\n")
    out.write_text(text)
    return out
