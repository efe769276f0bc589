"""Configs: strict parsing, YAML/JSON round trips, overrides."""

from __future__ import annotations

import pytest

import torchmim as tm
from torchmim.config import apply_overrides, from_dict, load_config_file, to_dict


def test_run_config_round_trips_through_yaml_and_json(tmp_path):
    cfg = tm.RunConfig.from_dict({
        "model": {"name": "mlp", "hidden": 20, "prior": "gmm", "prior_options": {"num_components": 3},
                  "logvar_clamp": [-6, 2]},
        "objective": {"name": "mim", "decoder_path_min_beta": 0.5},
        "data": {"name": "gmm20d", "n_train": 100},
        "train": {"epochs": 7, "lr": "1e-3"},
        "seed": 4,
    })
    assert cfg.model.logvar_clamp == (-6.0, 2.0) and cfg.train.seed == 4 and cfg.train.lr == 1e-3
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"run{suffix}"
        cfg.save(path)
        again = tm.RunConfig.from_file(path)
        assert again == cfg
        assert to_dict(again) == to_dict(cfg)


@pytest.mark.parametrize("data, message", [
    ({"model": {"hiden": 3}}, r"config\.model\.hiden: unknown key\. Did you mean 'hidden'\?"),
    ({"objective": {"name": "vea"}}, r"unknown objective 'vea'\. Did you mean 'vae'\?"),
    ({"train": {"epochs": "ten"}}, r"config\.train\.epochs: expected an integer"),
    ({"train": {"epochs": 0}}, r"train\.epochs must be >= 1"),
    ({"data": {"name": "mnist-typo"}}, r"unknown data set"),
    ({"model": {"activation": "tahn"}}, r"unknown activation 'tahn'\. Did you mean 'tanh'\?"),
    ({"eval": {"knn_latent": "both"}}, r"not one of \['sample', 'mean'\]"),
    ({"seed": 1, "train": {"seed": 2}}, r"conflicts with seed"),
    ({"extra": 1}, r"config\.extra: unknown key"),
])
def test_bad_configs_name_the_problem(data, message):
    with pytest.raises(tm.ConfigError, match=message):
        tm.RunConfig.from_dict(data)


def test_overrides_parse_yaml_values():
    data = apply_overrides({"model": {"hidden": 5}}, ["model.hidden=500", "train.lr=0.01",
                                                     "objective.name=vae", "model.logvar_clamp=[-6, 2]"])
    assert data == {"model": {"hidden": 500, "logvar_clamp": [-6, 2]}, "train": {"lr": 0.01},
                    "objective": {"name": "vae"}}
    with pytest.raises(tm.ConfigError, match="key.subkey=value"):
        apply_overrides({}, ["model.hidden"])


def test_config_files_errors(tmp_path):
    with pytest.raises(tm.ConfigError, match="not found"):
        load_config_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(tm.ConfigError, match="not valid YAML"):
        load_config_file(bad)
    bad.write_text("- a list")
    with pytest.raises(tm.ConfigError, match="mapping"):
        load_config_file(bad)


def test_objectives_are_their_own_configs():
    obj = from_dict(tm.Objective, {"name": "mim", "decoder_path_min_beta": 0.0}, where="objective")
    assert obj == tm.MIM(decoder_path_min_beta=0.0) and to_dict(obj) == {
        "name": "mim", "decoder_path_min_beta": 0.0}
