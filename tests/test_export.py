"""Export (torchmim.export, `torchmim export`): the exported encoder and decoder, run by ONNX
Runtime / TorchScript / torch.export, give the Python model's outputs within float tolerance."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from torchmim import latent
from torchmim.cli import main
from torchmim.data.transform import DataTransform
from torchmim.errors import ConfigError
from torchmim.export import ExportError, export_model, exported_runner
from torchmim.io import save_model
from torchmim.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def onnx_run(path, a):
    """ONNX Runtime directly (not the library's runner): {output name: array}."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: np.asarray(a, dtype=np.float32)})
    return dict(zip([o.name for o in session.get_outputs()], out))


@pytest.fixture
def standardized_mlp():
    """A Gaussian MLP model with a stored standardisation (raw units: scale 10, shift 3)."""
    model = build_model(name="mlp", x_dim=5, z_dim=3, hidden=16).eval()
    raw = np.random.default_rng(0).normal(size=(40, 5)) * 10 + 3
    model.data_transform = DataTransform.standardize(raw)
    return model


@pytest.mark.slow  # ~10 s on 2 busy cores, most of it the ONNX exporter's first start
def test_onnx_mlp_matches_python(standardized_mlp, tmp_path):
    """ONNX Runtime on a batch size never traced (7) equals the Python model: encoder mean and
    std of q(z|x) from raw rows (the standardisation inside the graph), decoder mean in raw units
    and std. Catches a wrong output order, a lost standardisation or a batch size baked in."""
    model = standardized_mlp
    manifest = export_model(model, tmp_path, format="onnx")
    assert manifest["outputs"] == {"encoder": ["mean", "std"], "decoder": ["mean", "std"]}
    assert manifest["standardization_included"] is True
    x = np.random.default_rng(1).normal(size=(7, 5)) * 10 + 3
    enc = onnx_run(tmp_path / "encoder.onnx", x)
    np.testing.assert_allclose(enc["mean"], latent.encode(model, x).numpy(), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        q = model.posterior(model.data_transform.forward(torch.tensor(x)).float())
    np.testing.assert_allclose(enc["std"], q.stddev.numpy(), rtol=1e-4, atol=1e-5)
    z = np.random.default_rng(2).normal(size=(7, 3))
    dec = onnx_run(tmp_path / "decoder.onnx", z)
    np.testing.assert_allclose(dec["mean"], latent.decode(model, z).numpy(), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        p = model.likelihood(torch.tensor(z, dtype=torch.float32))
    scale = np.array(model.data_transform.scale)
    np.testing.assert_allclose(dec["std"], p.stddev.numpy() * scale, rtol=1e-4, atol=1e-4)
    saved = json.loads((tmp_path / "export.json").read_text())
    assert saved["inputs"]["encoder"] == {"name": "x", "shape": ["batch", 5], "dtype": "float32"}
    assert max(saved["max_abs_error"].values()) < 1e-4


@pytest.mark.slow  # ~5 s: two ONNX exports
def test_onnx_image_model_matches_python(tmp_path):
    """An image model (image-mlp, Bernoulli pixels): images (N, 1, 8, 8) in, codes out; the
    decoder gives pixel probabilities (the mean) and logits equal to the model's."""
    model = build_model(name="image-mlp", x_shape=[1, 8, 8], z_dim=4, hidden=16).eval()
    export_model(model, tmp_path, format="onnx")
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    enc = onnx_run(tmp_path / "encoder.onnx", x.numpy())
    np.testing.assert_allclose(enc["mean"], model.encode(x).numpy(), rtol=1e-4, atol=1e-5)
    z = torch.randn(5, 4)
    dec = onnx_run(tmp_path / "decoder.onnx", z.numpy())
    with torch.no_grad():
        p = model.likelihood(z)
    np.testing.assert_allclose(dec["mean"], p.mean.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dec["logits"], p.base_dist.logits.numpy(), rtol=1e-4, atol=1e-4)
    assert dec["mean"].shape == (5, 1, 8, 8)


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_torch_formats_match_python(fmt, tmp_path):
    """TorchScript (traced) and torch.export programs of a Bernoulli MLP: the files load back
    with torch alone and reproduce encoder means and decoder probabilities on a new batch size."""
    model = build_model(name="mlp", x_dim=6, z_dim=2, hidden=8, likelihood="bernoulli").eval()
    manifest = export_model(model, tmp_path, format=fmt)
    x = torch.rand(9, 6)
    enc = exported_runner(tmp_path / manifest["files"]["encoder"])(x.numpy())
    np.testing.assert_allclose(enc[0], model.encode(x).numpy(), rtol=1e-5, atol=1e-6)
    z = torch.randn(9, 2)
    dec = exported_runner(tmp_path / manifest["files"]["decoder"])(z.numpy())
    np.testing.assert_allclose(dec[0], model.decode(z).numpy(), rtol=1e-5, atol=1e-6)


def test_two_level_model_exports_its_plug_in_mean(tmp_path):
    """ConvHVAE: the encoder exports the plug-in mean [E[z1|E z2], E z2] that model.encode
    returns (its only closed-form summary); the decoder its Bernoulli probabilities."""
    model = build_model(name="convhvae", x_shape=[1, 28, 28]).eval()
    manifest = export_model(model, tmp_path, format="torchscript")
    assert manifest["outputs"] == {"encoder": ["mean"], "decoder": ["mean", "logits"]}
    x = torch.rand(3, 1, 28, 28)
    out = exported_runner(tmp_path / "encoder.torchscript.pt")(x.numpy())
    np.testing.assert_allclose(out[0], model.encode(x).numpy(), rtol=1e-5, atol=1e-5)


def test_autoregressive_decoder_is_refused_with_the_reason(tmp_path):
    """PixelHVAE's decoder samples pixel by pixel: refused, before anything is written, with a
    one-line reason; its encoder alone exports."""
    model = build_model(name="pixelhvae", x_shape=[1, 28, 28]).eval()
    with pytest.raises(ExportError, match="autoregressive"):
        export_model(model, tmp_path / "both", format="torchscript")
    assert not any((tmp_path / "both").iterdir())
    manifest = export_model(model, tmp_path / "enc", format="torchscript", parts=["encoder"])
    assert list(manifest["files"]) == ["encoder"]


def test_failed_check_leaves_nothing(tmp_path):
    """An export whose check fails (an impossible tolerance) raises and leaves no file, not even
    a temporary one: files appear only once verified."""
    model = build_model(name="mlp", x_dim=3, z_dim=2, hidden=4)
    with pytest.raises(ExportError, match="differs from the model"):
        export_model(model, tmp_path, format="torchscript", atol=-1.0, rtol=0.0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="unknown export format"):
        export_model(model, tmp_path, format="tflite")


def test_cli_export(tmp_path):
    """`torchmim export RUN --format torchscript --out DIR` exports from a run folder and prints
    the files; a missing checkpoint is one line and exit status 2."""
    model = build_model(name="mlp", x_dim=3, z_dim=2, hidden=4)
    run = tmp_path / "run"
    save_model(model, run / "model.pt")
    out = tmp_path / "exported"
    res = CliRunner().invoke(main, ["export", str(run), "--format", "torchscript", "--out",
                                    str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "encoder.torchscript.pt").is_file() and (out / "decoder.torchscript.pt").is_file()
    assert "max |error|" in res.output
    res = CliRunner().invoke(main, ["export", str(tmp_path), "--format", "torchscript"])
    assert res.exit_code == 2 and "without model.pt" in res.output
