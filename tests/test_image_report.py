"""scripts/image_report.py: the Markdown report of several image sweep folders."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from torchmim.experiments.images import image_tables, paper_table

from .helpers import load_file


def _script():
    return load_file("scripts/image_report.py")


def _write(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


RUN = {"data": "MNIST", "model": "convHVAE (S)", "seed": 0, "nll": 101.234, "knn_acc": 0.9512,
       "knn_acc_k1": 0.9401, "active_units": 40, "best_epoch": 7, "epochs": 9,
       "train_seconds": 120.4, "eval_seconds": 30.2, "nll_samples": 50, "nll_points": 400,
       "n_train": 1000, "n_test": 500}
CLAIM = {"data": "MNIST", "model": "convHVAE (S)", "seed": 0, "metric": "knn_acc",
         "claim": "higher", "a": "mim", "b": "vae", "n": 500, "a_mean": 0.9512, "b_mean": 0.9311,
         "diff_mean": 0.0201, "ci_low": 0.011, "ci_high": 0.029, "test": "McNemar exact",
         "p": 0.0004, "verdict": "holds", "a_only": 20, "b_only": 10}


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "image-cpu-mnist"
    folder.mkdir()
    # no knn_acc_k3/k10 columns (a sweep without them), an empty knn_acc_k1 and nll_points
    _write(folder / "results.csv", [
        {**RUN, "objective.name": "mim"},
        {**RUN, "objective.name": "vae", "nll": 99.5, "knn_acc": 0.9311, "knn_acc_k1": "",
         "nll_points": ""}])
    _write(folder / "claims_test_points.csv", [
        {**CLAIM, "seed": 1}, CLAIM,
        {**CLAIM, "metric": "nll", "claim": "higher", "a_mean": 101.234, "b_mean": 99.5,
         "diff_mean": 1.734, "ci_low": 1.1, "ci_high": 2.3, "test": "paired t", "p": 0.01,
         "a_only": "", "b_only": ""}])
    return folder


def test_the_report_prints_every_value_and_dashes_for_missing_ones(tmp_path, capsys):
    # fails if an empty CSV field or a sweep without the 1/3/10-NN columns crashed the tables
    # (instead of "–"), if the claims lost their seed or order, or if names were not the
    # library's (metric_label, objective_label)
    assert _script().main([str(_folder(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "101.23" in out and "99.50" in out and "0.951" in out and "0.931" in out
    run_lines = [line for line in out.splitlines() if line.startswith("| MNIST | convHVAE (S) |")]
    mim = next(line for line in run_lines if "| MIM | 0 |" in line)
    vae = next(line for line in run_lines if "| VAE | 0 |" in line)
    assert "| 0.940 | – | 0.951 | – |" in mim and "| 99.50 | – | – | 0.931 | – |" in vae
    assert "| 40 | 7 / 9 | 120 | 30 |" in mim
    assert "1-NN" in out and "5-NN" in out  # metric_label's short names
    claims = [line for line in out.splitlines() if "| MIM vs VAE |" in line]
    assert len(claims) == 3
    # sorted by (data, model, seed, metric): seed 0's knn_acc, nll, then seed 1
    assert [line.split(" | ")[2:4] for line in claims] == [
        ["0", "5-NN acc."], ["0", "NLL (nats)"], ["1", "5-NN acc."]]
    assert "+0.020 [+0.011, +0.029]" in claims[0] and "20 vs 10 discordant" in claims[0]
    assert "+1.73 [+1.10, +2.30]" in claims[1]
    # paper_table's footnote skips the empty nll_points (400 from the other row)
    assert "on 400 test images" in out


def test_a_missing_folder_exits_2_in_one_line(tmp_path, capsys):
    # fails if a folder without results.csv gave a traceback or exit 0
    assert _script().main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "results.csv does not exist" in err and "\n" not in err


def test_paper_table_footnote_skips_missing_counts():
    # fails if a row without nll_samples / with a NaN or empty count crashed int(...)
    rows = [{**RUN, "objective.name": "mim", "nll_samples": float("nan"), "nll_points": ""},
            {**RUN, "objective.name": "vae"}]
    del rows[1]["n_train"]
    text = paper_table(image_tables(), Path("."), rows, [], metric="nll", table=1)
    assert "S = 50 on 400 test images" in text and "fit on 1000 training codes" in text
    only_missing = [{k: v for k, v in rows[0].items() if k != "n_test"}]
    assert "scored on – test codes" in paper_table(image_tables(), Path("."), only_missing, [],
                                                   metric="nll", table=1)


def test_the_same_run_in_two_folders_is_refused(tmp_path, capsys):
    # fails if two folders holding the same (data, model, objective, seed) were averaged as if
    # they were two seeds ("238.83 ± 0.00 (n=2)")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _folder(tmp_path / "a"), _folder(tmp_path / "b")
    assert _script().main([str(first), str(second)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the folders hold the same run more than once") and "\n" not in err


def test_the_image_sweep_claims_the_side_each_paper_cell_shows():
    # fails if Table 2's one reversed cell (Fashion-MNIST PixelHVAE (S): VAE 0.76 > A-MIM 0.71)
    # were claimed for MIM, or Omniglot's k-NN (no value in the paper) were claimed at all
    from torchmim.experiments.images import PAPER_TABLE2, image_tables, paper_claim_exceptions

    exceptions = paper_claim_exceptions()
    as_set = {(e["where"]["data"], e["where"]["model"], e["metric"], e["claim"])
              for e in exceptions}
    assert ("Fashion-MNIST", "PixelHVAE (S)", "knn_acc", "lower") in as_set
    assert {(d, m) for d, m, metric, c in as_set if metric == "knn_acc" and c is None} == {
        ("Omniglot", m) for m in PAPER_TABLE2["MNIST"]}
    assert not any(metric == "nll" for _, _, metric, _ in as_set)  # Table 1: VAE better in all
    assert len(exceptions) == 5
    spec = image_tables()
    assert spec.claim_exceptions == exceptions and spec.compare == [["mim", "amim"], "vae"]


def test_folders_run_before_a_claims_correction_get_the_current_claims():
    # fails if `torchmim report` or the image backfill judged an old folder on the claims saved
    # in its sweep.json (e.g. fig5's reconstruction side, or image cells without the paper's side)
    from torchmim.experiments import get_sweep, with_current_claims

    grid = dict(get_sweep("fig5").grid)  # a folder of the registered sweep: its grid keys
    old = {"name": "fig5", "grid": grid, "claims": None, "compare": ["mim", "vae"]}
    new = with_current_claims(old)
    assert "recon_error" not in new["claims"] and new["claim_exceptions"]
    assert new["grid"] == old["grid"] and old["claims"] is None  # the runs' part kept, no mutation
    user = {"name": "my-sweep", "claims": {"mi": "lower"}}
    assert with_current_claims(user) is user
    spec = get_sweep("image-tables")
    stale = type(spec)(name="image-tables", grid=spec.grid)
    assert with_current_claims(stale).claim_exceptions == spec.claim_exceptions


def test_claim_exceptions_naming_no_setting_or_claim_are_refused_in_one_line():
    # fails if a typo in a claim exception (a key that is not a grid setting, a metric the sweep
    # does not claim, no `where`) were accepted: the paper's side would silently not apply
    from torchmim.config import from_dict
    from torchmim.errors import ConfigError
    from torchmim.experiments import get_sweep
    from torchmim.experiments.spec import SweepSpec, spec_to_dict

    base = spec_to_dict(get_sweep("fig5"))
    for bad, says in (({"where": {"z_dim": 2}, "metric": "mi", "claim": None}, "z_dim, not a"),
                      ({"where": {"model.z_dim": 2}, "metric": "mii", "claim": None}, "'mii'"),
                      ({"metric": "mi", "claim": "lower"}, "a claim exception is"),
                      ({"where": {"seed": 0}, "metric": "mi", "claim": None}, "seed, not a")):
        with pytest.raises(ConfigError, match=says) as e:
            from_dict(SweepSpec, {**base, "claim_exceptions": [bad]})
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="must be a list"):
        SweepSpec(name="x", grid={"seed": [0]}, claim_exceptions=None)
    # a preset's smaller grid keeps the full sweep's exceptions (values are not checked)
    assert get_sweep("image-tables").resolved(preset="cpu").claim_exceptions


def test_a_user_sweep_sharing_a_registered_name_keeps_its_claims():
    # fails if with_current_claims replaced the sides and claims of a user's fig3.yaml (another
    # grid) with the built-in fig3's: the sign of every difference could flip
    from torchmim.experiments import with_current_claims

    user = {"name": "fig3", "group": "objective.name", "grid": {"model.hidden": [5], "seed": [0],
                                                                "objective.name": ["vae", "mim"]},
            "claims": {"mi": "lower"}, "compare": ["vae", "mim"]}
    assert with_current_claims(user) is user


def test_claims_table_marks_a_row_claimed_for_the_other_side(tmp_path, capsys):
    # fails if a row the paper claims the other way (an exception) were printed like the column's
    # default claim: a reader would take a VAE win for a MIM win
    from torchmim.experiments.tables import write_csv

    rows = [{"data": "F", "model": m, "metric": "knn_acc", "claim": c, "diff_mean": 0.1,
             "ci_low": 0.05, "ci_high": 0.15, "t_p": 0.01, "p_holm": 0.02, "verdict": v}
            for m, c, v in (("a", "higher", "holds"), ("b", "lower", "opposite"))]
    write_csv(tmp_path / "claims.csv", rows, first=["data", "model", "metric"])
    script = load_file("scripts/claims_table.py")
    import sys

    argv = sys.argv
    sys.argv = ["claims_table.py", str(tmp_path / "claims.csv")]
    try:
        script.main()
    finally:
        sys.argv = argv
    out = capsys.readouterr().out
    line_a = next(line for line in out.splitlines() if line.startswith("| F, a |"))
    line_b = next(line for line in out.splitlines() if line.startswith("| F, b |"))
    assert "claimed" not in line_a and "(claimed <) ✗" in line_b
