"""Sweeps: spec expansion, aggregation on hand-made tables, resume, and every paper experiment end
to end in a tiny --quick mode."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import torchmim as tm
from torchmim.cli import main
from torchmim.experiments import (
    EXPERIMENTS,
    SweepSpec,
    aggregate,
    expand,
    get_sweep,
    load_sweep_file,
    read_csv,
    run_sweep,
)
from torchmim.experiments.aggregate import series
from torchmim.report import build_report, claims

# Tiny overrides on top of --quick so that every experiment runs in seconds here.
TINY = ["train.epochs=2", "data.n_train=300", "data.n_val=200", "data.n_test=300",
        "eval.max_points=300", "eval.nll_samples=10"]


def test_aggregate_on_a_hand_made_table():
    rows = [
        {"objective": "mim", "w": 5, "seed": 0, "mi": 2.0, "nll": 1.0},
        {"objective": "mim", "w": 5, "seed": 1, "mi": 4.0, "nll": 3.0},
        {"objective": "mim", "w": 5, "seed": 2, "mi": 6.0, "nll": float("nan")},
        {"objective": "vae", "w": 5, "seed": 0, "mi": 1.0, "nll": 0.5},
        {"objective": "mim", "w": 50, "seed": 0, "mi": 7.0, "nll": 2.0},
    ]
    out = aggregate(rows, ["objective", "w"], ["mi", "nll"])
    assert [(e["objective"], e["w"], e["n"]) for e in out] == [("mim", 5, 3), ("vae", 5, 1),
                                                               ("mim", 50, 1)]
    mim5 = out[0]
    assert mim5["mi_mean"] == pytest.approx(4.0) and mim5["mi_std"] == pytest.approx(2.0)
    assert mim5["nll_mean"] == pytest.approx(2.0)  # the NaN row is left out of that metric
    assert mim5["nll_std"] == pytest.approx(math.sqrt(2.0))
    assert out[1]["mi_std"] == 0.0  # a single seed
    xs, mean, std = series(out, "objective", "w", "mi")["mim"]
    assert list(xs) == [5, 50] and list(mean) == [4.0, 7.0] and list(std) == [2.0, 0.0]


def test_claims_on_a_hand_made_summary():
    summary = [
        {"objective.name": "mim", "w": 5, "mi_mean": 3.0, "mi_std": 0.1, "nll_mean": 2.0,
         "nll_std": 0.1, "recon_rmse_mean": 0.1, "recon_rmse_std": 0.0, "knn_acc_mean": 0.9,
         "knn_acc_std": 0.0},
        {"objective.name": "vae", "w": 5, "mi_mean": 1.0, "mi_std": 0.1, "nll_mean": 2.5,
         "nll_std": 0.1, "recon_rmse_mean": 0.5, "recon_rmse_std": 0.0, "knn_acc_mean": 0.5,
         "knn_acc_std": 0.0},
    ]
    result = dict((text.split(" (")[0], ok) for text, ok in claims(summary, "w", "objective.name"))
    assert result == {"w = 5: MIM has higher MI": True, "w = 5: MIM has higher 5-NN accuracy": True,
                      "w = 5: MIM reconstructs better": True, "w = 5: VAE has the better NLL": False}


def test_expand_products_variants_and_ids():
    spec = SweepSpec(name="t", base={"model": {"hidden": 4}},
                     grid={"model.z_dim": [2, 3], "objective.name": ["mim", "vae"],
                           "v": [{"label": "a", "set": {"train.lr": 0.01}}, {"label": "b",
                                                                              "set": {}}]})
    cells = expand(spec)
    assert len(cells) == 8
    assert cells[0].id == "z_dim-2_objective-mim_v-a" and cells[0].params["v"] == "a"
    assert cells[0].config.train.lr == 0.01 and cells[1].config.train.lr == 1e-3
    assert len({c.id for c in cells}) == 8
    with pytest.raises(tm.ConfigError, match="not a grid key"):
        SweepSpec(name="t", grid={"seed": [0]}, x="model.hidden")
    with pytest.raises(tm.ConfigError, match="unknown key"):
        expand(SweepSpec(name="t", grid={"model.hiden": [1]}))


def test_exclude_presets_and_variant_selection():
    arch = [{"label": "A", "set": {"model.hidden": 3}}, {"label": "B", "set": {"model.hidden": 5}}]
    spec = SweepSpec(name="t", grid={"arch": arch, "objective.name": ["mim", "amim", "vae"]},
                     exclude=[{"arch": "A", "objective.name": "amim"},
                              {"arch": ["B"], "objective.name": "mim"}],
                     presets={"small": {"grid": {"arch": ["B"]}, "set": {"train.epochs": 2},
                                        "description": "only B"}})
    assert [c.id for c in expand(spec)] == ["arch-A_objective-mim", "arch-A_objective-vae",
                                            "arch-B_objective-amim", "arch-B_objective-vae"]
    small = expand(spec.resolved(preset="small"))
    assert [c.params["arch"] for c in small] == ["B", "B"]
    assert small[0].config.train.epochs == 2 and small[0].config.model.hidden == 5
    assert len(expand(spec.resolved(only={"objective.name": ["vae"]}))) == 2
    with pytest.raises(tm.ConfigError, match="no preset 'smal'. Did you mean 'small'"):
        spec.resolved(preset="smal")
    with pytest.raises(tm.ConfigError, match="'C' is not a variant of 'arch'"):
        spec.resolved(only={"arch": ["C"]})


def test_quick_mode_and_overrides_resize_the_grid():
    spec = get_sweep("fig3")
    full, quick = expand(spec), expand(spec.resolved(quick=True))
    assert len(full) == 8 * 2 * 10 and len(quick) < len(full)
    assert quick[0].config.train.epochs < full[0].config.train.epochs
    seeded = spec.resolved(seeds=3, epochs=7, overrides=["eval.nll_samples=5"])
    cells = expand(seeded)
    assert len(cells) == 8 * 2 * 3 and cells[0].config.train.epochs == 7
    assert cells[0].config.eval.nll_samples == 5


def test_user_sweep_from_yaml_runs_resumes_and_reports(tmp_path):
    sweep_file = tmp_path / "mine.yaml"
    sweep_file.write_text(
        "description: widths on a user mixture\n"
        "base:\n  data: {name: gmm, means: [[0, 0], [2, 2]], std: 0.3, n_train: 300, n_val: 200,"
        " n_test: 300}\n  train: {epochs: 2}\n  eval: {nll_samples: 10, max_points: 300}\n"
        "grid:\n  model.hidden: [4, 8]\n  objective.name: [mim, vae]\n  seed: [0]\n"
        "x: model.hidden\nfigures:\n  - {kind: curves, file: curves.png}\n")
    spec = load_sweep_file(sweep_file)
    assert spec.name == "mine"
    out = tmp_path / "res"
    first = run_sweep(spec, out, workers=1, progress=False)
    assert first.complete and len(first.rows) == 4
    rows = read_csv(out / "results.csv")
    assert {"cell", "objective", "seed", "model.hidden", "mi", "nll", "recon_rmse", "knn_acc",
            "train.epochs"} <= set(rows[0])
    assert sorted(r["model.hidden"] for r in rows) == [4, 4, 8, 8]
    # a second run skips every finished cell: the metrics files are not rewritten
    stamp = (out / "cells" / first.cells[0].id / "metrics.json").stat().st_mtime_ns
    second = run_sweep(spec, out, workers=1, progress=False)
    assert (out / "cells" / first.cells[0].id / "metrics.json").stat().st_mtime_ns == stamp
    assert [r["mi"] for r in second.rows] == [r["mi"] for r in first.rows]
    summary = read_csv(out / "summary.csv")
    assert len(summary) == 4 and summary[0]["n"] == 1
    page = build_report(tmp_path).read_text()
    assert "mine" in page and "res/curves.png" in page
    # the same folder with a different spec is refused
    with pytest.raises(tm.ConfigError, match="different sweep .*base config or grid differ"):
        run_sweep(spec.resolved(overrides=["train.epochs=3"]), out, workers=1, progress=False)
    # ... but more seeds of the same sweep extend it: only the new cells run
    spec.grid["seed"] = [0, 1]
    third = run_sweep(spec, out, workers=1, progress=False)
    assert third.complete and len(third.rows) == 8
    assert (out / "cells" / first.cells[0].id / "metrics.json").stat().st_mtime_ns == stamp


def test_sweeps_share_a_folder_only_when_shared_cells_mean_the_same_runs():
    from torchmim.experiments.runner import _compatible

    a = {"label": "A", "set": {"model.hidden": 4}}
    base = {"base": {"train": {"epochs": 2}}, "exclude": [], "overrides": [],
            "grid": {"model": [a], "seed": [0, 1, 2]}}
    assert _compatible(base, {**base, "grid": {"model": [a], "seed": list(range(10))}})
    assert _compatible(base, {**base, "grid": {"model": [a, {"label": "B", "set": {}}],
                                               "seed": [0]}})
    changed_variant = {"label": "A", "set": {"model.hidden": 8}}  # same label, different run
    assert not _compatible(base, {**base, "grid": {"model": [changed_variant], "seed": [0]}})
    assert not _compatible(base, {**base, "grid": {"seed": [0]}})  # a grid key dropped
    assert not _compatible(base, {**base, "overrides": ["train.epochs=3"]})


def test_an_interrupted_cell_resumes_from_its_checkpoint(tmp_path):
    spec = get_sweep("appendix-d2").resolved(quick=True, overrides=TINY)
    cell = expand(spec)[0]
    folder = tmp_path / "cells" / cell.id
    tm.run(cell.config.__class__.from_dict({**cell.config.to_dict(),
                                             "train": {**cell.config.to_dict()["train"],
                                                       "epochs": 1}}), folder)
    (folder / "metrics.json").unlink()  # as if it stopped after epoch 1
    result = run_sweep(spec, tmp_path, workers=1, progress=False)
    history = (folder / "history.csv").read_text().strip().splitlines()
    assert result.complete and len(history) == 1 + 2  # header + epoch 1 (kept) + epoch 2
    # train_seconds counts the epoch trained before the interruption as well
    seconds = [float(line.split(",")[history[0].split(",").index("seconds")]) for line in history[1:]]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["train_seconds"] == pytest.approx(sum(seconds), rel=1e-6)


def test_parallel_workers_give_the_same_results_as_serial(tmp_path):
    spec = get_sweep("fig3").resolved(quick=True, overrides=TINY,
                                      only={"model.hidden": [4], "seed": [0]})
    serial = run_sweep(spec, tmp_path / "a", workers=1, progress=False, figures=False)
    parallel = run_sweep(spec, tmp_path / "b", workers=2, progress=False, figures=False)
    assert [r["mi"] for r in serial.rows] == [r["mi"] for r in parallel.rows]


# every registered sweep once (table1 and table2 are aliases of image-tables)
_UNIQUE = [n for n in EXPERIMENTS.names() if n not in ("table1", "table2")]


@pytest.mark.parametrize("name", _UNIQUE)
def test_every_experiment_runs_in_quick_mode(name, tmp_path, request):
    if name in ("fig5", "image-tables"):  # both read the full Fashion-MNIST
        request.getfixturevalue("fashion_dir")
    only = {}
    if name == "image-tables":  # the image sweep: the convHVAE (VP) and PixelHVAE (S) cells
        only = {"model": ["convHVAE (VP)", "PixelHVAE (S)"]}
    spec = get_sweep(name).resolved(quick=True, only=only, overrides=TINY + (
        ["init.epochs=1"] if name == "appendix-d4" else []))
    spec.grid = {k: (v[:1] if k == "seed" else v) for k, v in spec.grid.items()}
    result = run_sweep(spec, tmp_path, workers=1, progress=False)
    assert result.complete, result.failures
    state = json.loads((tmp_path / "sweep.json").read_text())
    for fig in spec.figures:
        if fig.file in state["skipped_figures"]:
            assert "no finished cell" in state["skipped_figures"][fig.file]
        elif fig.kind == "test_point_claims":  # the image tables' claims over test images
            assert "Claims paired over test images" in (tmp_path / fig.file).read_text()
        elif fig.file.endswith(".md"):
            assert "| Fashion-MNIST (torchmim) |" in (tmp_path / fig.file).read_text()
        else:
            assert (tmp_path / fig.file).read_bytes()[:4] == b"\x89PNG", fig.file
    assert len(state["skipped_figures"]) < len(spec.figures)
    assert state["finished"] == len(result.cells) and state["wall_seconds"] > 0
    assert np.isfinite([r["nll"] for r in result.rows]).all()


def test_sweep_cli_lists_and_runs(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["sweep", "--list"])
    assert res.exit_code == 0 and "fig3" in res.output and "appendix-d4" in res.output
    res = runner.invoke(main, ["sweep", "appendix-d2", "--quick", "--out", str(tmp_path / "d2"),
                               "--workers", "1", "--no-progress", *sum((["-s", t] for t in TINY), [])])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d2" / "results.csv").is_file()
    res = runner.invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 0 and (tmp_path / "index.html").is_file()
    res = runner.invoke(main, ["sweep", "fig33"])
    assert res.exit_code == 2 and "Did you mean 'fig3'" in res.output


def test_overrides_apply_after_a_variant_that_sets_a_whole_section():
    spec = SweepSpec(
        name="s",
        grid={"data": [{"label": "2D", "set": {"data": {"name": "gmm2d"}}}], "seed": [0]},
        presets={"small": {"set": {"data.n_train": 123}}},
    )
    cell = expand(spec.resolved(preset="small", overrides=["data.n_test=77"]))[0]
    assert (cell.config.data.n_train, cell.config.data.n_test) == (123, 77)
    with pytest.raises(tm.ConfigError, match="'seed' would replace what the grid sets"):
        spec.resolved(overrides=["seed=3"])


def test_claims_pair_rows_on_every_grid_key_and_count_amim_as_mim():
    def row(obj, model, acc):
        return {"objective.name": obj, "data": "F", "model": model, "knn_acc_mean": acc,
                "knn_acc_std": 0.0}

    summary = [row("mim", "conv", 0.8), row("vae", "conv", 0.7),
               row("amim", "pixel", 0.6), row("vae", "pixel", 0.65)]
    result = dict((t.split(" (")[0], ok) for t, ok in claims(summary, ["data", "model"],
                                                            "objective.name"))
    assert result == {"data = F, model = conv: MIM has higher 5-NN accuracy": True,
                      "data = F, model = pixel: MIM has higher 5-NN accuracy": False}


def test_overrides_may_not_replace_what_the_grid_sets_and_grid_can_widen_a_preset():
    spec = get_sweep("image-tables")
    for bad in ("data.name=mnist", "model.prior=vampprior", "model={}", "objective.name=vae"):
        with pytest.raises(tm.ConfigError, match="would replace what the grid sets"):
            spec.resolved(overrides=[bad])
    spec.resolved(overrides=["data.n_train=10", "model.num_pseudo_inputs=5"])  # allowed
    widened = spec.resolved(preset="cpu", only={"data": ["MNIST", "Omniglot"]})
    assert [v["label"] for v in widened.grid["data"]] == ["MNIST", "Omniglot"]


def test_paper_table_on_hand_made_rows(tmp_path):
    """Table 1 puts our mean (± std with n > 1, the mean alone for one seed) beside the paper's."""
    from torchmim.experiments.images import PAPER_TABLE1, paper_table

    spec = get_sweep("image-tables")
    common = {"data": "Fashion-MNIST", "nll_samples": 100, "nll_points": 300, "n_train": 1000,
              "n_test": 1000}
    rows = [{**common, "cell": "a", "model": "convHVAE (S)", "objective.name": "mim", "seed": 0,
             "nll": 300.0},
            {**common, "cell": "b", "model": "convHVAE (S)", "objective.name": "mim", "seed": 1,
             "nll": 310.0},
            {**common, "cell": "c", "model": "convHVAE (S)", "objective.name": "vae", "seed": 0,
             "nll": 250.0}]
    text = paper_table(spec, tmp_path, rows, [], metric="nll", table=1)
    ours = next(line for line in text.splitlines() if line.startswith("| Fashion-MNIST (torchmim)"))
    paper = next(line for line in text.splitlines() if line.startswith("| Fashion-MNIST (paper)"))
    cells = [c.strip() for c in ours.strip("|").split("|")]
    assert cells[1] == f"305.00 ± {np.std([300.0, 310.0], ddof=1):.2f} (n=2)"
    assert cells[2] == "250.00"  # one seed: no "± 0.00"
    assert cells[3] == "–"  # no run for convHVAE (VP)
    m, s = PAPER_TABLE1["Fashion-MNIST"]["convHVAE (S)"][0]
    assert f"{m:.2f} ± {s:.2f}" in paper
    assert "S = 100 on 300 test images" in text


def test_plan_units_groups_cells_that_differ_only_in_seed_and_objective():
    from torchmim.experiments.runner import plan_units

    cells = expand(get_sweep("fig3"))
    units = plan_units(cells)
    assert len(units) == 8 and all(vec and len(unit) == 20 for unit, vec in units)  # one per width
    for unit, _ in units:
        assert len({c.config.model.hidden for c in unit}) == 1
        assert {c.config.objective.name for c in unit} == {"mim", "vae"}
    assert len(plan_units(cells, vectorize=False)) == 160
    size = {}  # at most group_units // width members per group
    for unit, _ in plan_units(cells, group_units=2000):
        size[unit[0].config.model.hidden] = max(len(unit), size.get(unit[0].config.model.hidden, 0))
    assert (size[5], size[100], size[200], size[500]) == (20, 20, 10, 4)
    one_d = expand(get_sweep("appendix-d2"))  # mixture conditionals: not vectorisable
    assert all(not vec and len(u) == 1 for u, vec in plan_units(one_d))


def test_schedule_starts_the_costliest_units_first():
    """Longest-processing-time first: fig3's groups widest first (so the last group to start is a
    narrow one), the plain units of one width in grid order, and a model without a width keeps
    its place."""
    from torchmim.experiments.runner import plan_units, schedule

    cells = expand(get_sweep("fig3"))
    order = [unit[0].config.model.hidden for unit, _ in schedule(plan_units(cells))]
    assert order == [500, 400, 300, 200, 100, 50, 20, 5]
    plain = schedule(plan_units(cells, vectorize=False))
    assert [u[0][0].id for u in plain[:20]] == [c.id for c in cells if c.config.model.hidden == 500]
    images = expand(get_sweep("image-tables"))
    assert [u[0][0].id for u in schedule(plan_units(images))] == [c.id for c in images]


def test_a_vectorised_sweep_writes_the_same_rows_and_resumes_a_partly_finished_group(tmp_path):
    from torchmim.training import run_group

    spec = get_sweep("fig3").resolved(quick=True, overrides=TINY,
                                      only={"model.hidden": [4], "seed": [0, 1]})
    plain = run_sweep(spec, tmp_path / "plain", workers=1, progress=False, figures=False,
                      vectorize=False)
    straight = run_sweep(spec, tmp_path / "vec", workers=1, progress=False, figures=False)
    assert plain.complete and straight.complete and len(straight.rows) == 4
    assert list(plain.rows[0]) == list(straight.rows[0])  # the same columns
    for a, b in zip(plain.rows, straight.rows):  # the same runs, up to float rounding
        assert (a["cell"], a["epochs"], a["best_epoch"]) == (b["cell"], b["epochs"], b["best_epoch"])
        assert b["mi"] == pytest.approx(a["mi"], abs=1e-3)
        assert b["nll"] == pytest.approx(a["nll"], abs=1e-3)
    for name in ("config.yaml", "model.pt", "checkpoint.pt", "history.csv", "metrics.json"):
        assert (tmp_path / "vec" / "cells" / straight.cells[0].id / name).is_file()
    # an interrupted group: cell 0 finished, the other three stopped after epoch 1 of 2
    out = tmp_path / "resumed"
    cells = straight.cells
    shutil.copytree(tmp_path / "vec" / "cells" / cells[0].id, out / "cells" / cells[0].id)
    stamp = (out / "cells" / cells[0].id / "metrics.json").stat().st_mtime_ns
    short = [c.config.__class__.from_dict({**c.config.to_dict(), "train": {
        **c.config.to_dict()["train"], "epochs": 1}}) for c in cells[1:]]
    run_group(short, [out / "cells" / c.id for c in cells[1:]])
    for c in cells[1:]:
        (out / "cells" / c.id / "metrics.json").unlink()
    resumed = run_sweep(spec, out, workers=1, progress=False, figures=False)
    assert resumed.complete
    assert (out / "cells" / cells[0].id / "metrics.json").stat().st_mtime_ns == stamp
    for a, b in zip(straight.rows, resumed.rows):
        assert b["epochs"] == a["epochs"] and b["mi"] == pytest.approx(a["mi"], rel=1e-6)
        lines = (out / "cells" / a["cell"] / "history.csv").read_text().strip().splitlines()
        assert len(lines) == 1 + a["epochs"]
