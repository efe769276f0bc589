"""Latent-space tools: interpolation (linear, spherical, quantile), nearest neighbours, sampling
within a radius and decoding, in the data's raw units — as functions and as `torchmim latent`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from matplotlib.image import imread
from torch.distributions import Normal

from torchmim import latent
from torchmim.cli import main
from torchmim.data import DataTransform
from torchmim.errors import DataError
from torchmim.io import load_model, save_model
from torchmim.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def model_with_transform(prior: str = "normal", z_dim: int = 3, image: bool = False, **opts):
    model = build_model(name="mlp", x_dim=16, z_dim=z_dim, hidden=8, prior=prior, **opts)
    rng = np.random.default_rng(0)
    model.data_transform = DataTransform(tuple(rng.normal(size=16) * 10),
                                         tuple(rng.uniform(0.5, 5, 16)),
                                         image_shape=(1, 4, 4) if image else None)
    return model


def raw_rows(n: int = 6) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 16)) * 5 + 3


@pytest.mark.parametrize("prior", ["normal", "gaussian", "gmm"])
@pytest.mark.parametrize("method", latent.INTERPOLATIONS)
def test_interpolation_endpoints_are_the_codes(prior, method):
    # every path starts and ends exactly at the given codes; breaks if a method drops or moves
    # the endpoints (e.g. through a CDF round trip)
    model = model_with_transform(prior)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    res = latent.interpolate(model, a, b, 7, method=method, codes=True)
    assert res.z.shape == (4, 7, 3) and res.x.shape == (4, 7, 16) and res.t.shape == (7,)
    assert torch.equal(res.z[:, 0], a) and torch.equal(res.z[:, -1], b)
    # the decoded path is the decoder's mean of each code, in raw units
    torch.testing.assert_close(res.x[:, 3], latent.decode(model, res.z[:, 3]))
    if method == "quantile":  # a monotone map per coordinate: each coordinate moves monotonically
        steps = torch.diff(res.z, dim=1) * torch.sign(b - a)[:, None]
        assert (steps >= -1e-5).all()


def test_linear_spherical_and_quantile_closed_forms():
    # N(0, I) prior: linear midpoint is the mean; slerp keeps the norm of equal-norm endpoints;
    # the quantile path between a and -a passes through 0 with each coordinate at
    # Φ⁻¹((1 − t)Φ(a) + tΦ(−a))
    model = model_with_transform("normal")
    a = torch.tensor([[1.5, -0.5, 2.0]])
    b = torch.tensor([[-2.0, 1.5, 0.5]])
    b = b / b.norm() * a.norm()
    lin = latent.interpolate(model, a, b, 5, codes=True).z
    torch.testing.assert_close(lin[0, 2], (a[0] + b[0]) / 2)
    sph = latent.interpolate(model, a, b, 9, method="spherical", codes=True).z
    torch.testing.assert_close(sph[0].norm(dim=-1), a.norm().expand(9))
    assert (lin[0].norm(dim=-1)[1:-1] < a.norm()).all()  # a straight line cuts inside
    q = latent.interpolate(model, a, -a, 5, method="quantile", codes=True)
    torch.testing.assert_close(q.z[0, 2], torch.zeros(3), atol=1e-6, rtol=0)
    std = Normal(0.0, 1.0)
    want = std.icdf(0.75 * std.cdf(a[0]) + 0.25 * std.cdf(-a[0]))
    torch.testing.assert_close(q.z[0, 1], want, atol=1e-5, rtol=1e-5)


def test_spherical_follows_a_learned_gaussian_prior():
    # with a learned diagonal Gaussian prior, slerp runs in its whitened coordinates: the
    # whitened norm stays constant between endpoints of equal whitened norm
    model = model_with_transform("gaussian")
    with torch.no_grad():
        model.prior.loc.copy_(torch.tensor([1.0, -2.0, 0.5]))
        model.prior.logvar.copy_(torch.tensor([0.0, 1.0, -1.0]))
    pz = model.latent_prior().base_dist
    u_a, u_b = torch.tensor([[1.0, 2.0, -1.0]]), torch.tensor([[-2.0, 0.5, 1.5]])
    u_b = u_b / u_b.norm() * u_a.norm()
    a, b = pz.loc + pz.scale * u_a, pz.loc + pz.scale * u_b
    z = latent.interpolate(model, a.detach(), b.detach(), 6, method="spherical", codes=True).z
    torch.testing.assert_close(((z[0] - pz.loc) / pz.scale).norm(dim=-1),
                               u_a.norm().expand(6), atol=1e-4, rtol=1e-4)


def test_sampling_stays_within_the_radius():
    # every code lies in the ball around its centre, and the ball is filled (not a shell or
    # a point); raw rows are encoded through the stored transform
    model = model_with_transform()
    x = raw_rows(3)
    res = latent.sample_around(model, x, radius=0.7, n=400, seed=3)
    assert res.z.shape == (3, 400, 3) and res.x.shape == (3, 400, 16)
    torch.testing.assert_close(res.centers, latent.encode(model, x))
    dist = (res.z - res.centers[:, None]).norm(dim=-1)
    assert dist.max() <= 0.7 + 1e-6 and dist.max() > 0.6 and dist.min() < 0.4
    # uniform in the 3-ball: P(|d| < r/2) = 1/8
    assert abs(float((dist < 0.35).float().mean()) - 0.125) < 0.05
    again = latent.sample_around(model, x, radius=0.7, n=400, seed=3)
    assert torch.equal(again.z, res.z)  # seeded
    with pytest.raises(DataError, match="radius must be a positive"):
        latent.sample_around(model, x, radius=-1.0)


def test_decode_encode_and_neighbors_in_raw_units():
    # decode gives rows of the training file's shape and units; the neighbours equal a brute
    # force search on the codes, with each point's own row left out
    model = model_with_transform()
    x = raw_rows(20)
    z = latent.encode(model, x)
    assert z.shape == (20, 3)
    torch.testing.assert_close(z, model.encode(model.data_transform.forward(
        torch.tensor(x)).float()))
    dec = latent.decode(model, z)
    tr = model.data_transform
    assert dec.shape == (20, 16)
    torch.testing.assert_close(dec.double(), tr.inverse(model.decode(z).double()),
                               rtol=1e-5, atol=1e-4)
    nb = latent.nearest_neighbors(model, x, k=4)
    d = torch.cdist(z.double(), z.double())
    d.fill_diagonal_(math.inf)
    want = d.topk(4, largest=False)
    np.testing.assert_array_equal(nb.indices, want.indices.numpy())
    np.testing.assert_allclose(nb.distances, want.values.numpy(), rtol=1e-5)
    with pytest.raises(DataError, match="16 values per row"):
        latent.encode(model, np.zeros((2, 5)))
    with pytest.raises(DataError, match="NaN"):
        latent.encode(model, np.full((2, 16), np.nan))


def test_cli_writes_arrays_and_pictures(tmp_path):
    # each command writes its arrays (and a PNG for image data) with the documented shapes
    model = model_with_transform(image=True)
    save_model(model, tmp_path / "model.pt")
    assert load_model(tmp_path / "model.pt").data_transform.image_shape == (1, 4, 4)
    x = raw_rows(10)
    np.save(tmp_path / "x.npy", x)
    run = CliRunner().invoke
    base = [str(tmp_path / "model.pt"), "--data", str(tmp_path / "x.npy")]

    res = run(main, ["latent", "interpolate", *base, "--pairs", "0:1,2:3", "--steps", "5",
                     "--method", "spherical", "--out", str(tmp_path / "i.npz")])
    assert res.exit_code == 0, res.output
    arrays = np.load(tmp_path / "i.npz")
    assert arrays["z"].shape == (2, 5, 3) and arrays["x"].shape == (2, 5, 16)
    png = imread(tmp_path / "i.png")
    assert png.shape[0] > 2 * 4 and png.shape[1] > 5 * 4  # 2 rows of 5 (enlarged) 4x4 tiles

    res = run(main, ["latent", "encode", *base, "--out", str(tmp_path / "z.npy")])
    assert res.exit_code == 0, res.output
    z = np.load(tmp_path / "z.npy")
    np.testing.assert_allclose(z, latent.encode(model, x).numpy(), rtol=1e-6)
    res = run(main, ["latent", "decode", str(tmp_path / "model.pt"), "--codes",
                     str(tmp_path / "z.npy"), "--out", str(tmp_path / "d.npz")])
    assert res.exit_code == 0, res.output
    assert np.load(tmp_path / "d.npz")["x"].shape == (10, 16) and (tmp_path / "d.png").is_file()

    res = run(main, ["latent", "neighbors", *base, "--index", "0,4", "-k", "3",
                     "--out", str(tmp_path / "n.npz")])
    assert res.exit_code == 0, res.output
    nb = np.load(tmp_path / "n.npz")
    assert nb["indices"].shape == (2, 3) and 0 not in nb["indices"][0]
    res = run(main, ["latent", "sample", *base, "--index", "1", "--radius", "0.5", "-n", "6",
                     "--out", str(tmp_path / "s.npz")])
    assert res.exit_code == 0, res.output
    s = np.load(tmp_path / "s.npz")
    assert s["x"].shape == (1, 6, 16)
    assert np.linalg.norm(s["z"] - s["centers"][:, None], axis=-1).max() <= 0.5 + 1e-6

    res = run(main, ["latent", "interpolate", *base, "--pairs", "0:99"])
    assert res.exit_code == 2 and "row 99 is out of range" in res.output
    assert res.output.count("\n") == 1
