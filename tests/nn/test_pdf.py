"""The p(z) head: targets, losses, what is read from a PDF on the grid, its calibration and its training."""

import numpy as np
import pytest
import torch
from scipy.stats import norm

from slitcli.io.redshift import odds
from slitcli.io.zpdf import z_grid
from slitcli.nn import create_model, pdf
from slitcli.nn.pdf_calibration import fit_logit_temperature, pit_ks, pit_objective
from slitcli.nn.predict import mc_pdf

T_MAX, N_BINS = 1.1, 1101  # nodes every 0.001 in t
NODES = pdf.nodes(N_BINS, T_MAX)


def gaussian_logits(mu, sigma):
    """Logits of Gaussians in t [len(mu), N_BINS]."""
    return -0.5 * ((NODES[None, :] - np.asarray(mu)[:, None]) / np.asarray(sigma)[:, None]) ** 2


def gaussian_probs(mu, sigma):
    """Node probabilities of Gaussians in t [len(mu), N_BINS]."""
    p = np.exp(gaussian_logits(mu, sigma))
    return p / p.sum(-1, keepdims=True)


@pytest.mark.parametrize("t", [0.2, 0.45678, 0.8001])
def test_two_hot_target_has_its_mean_at_the_truth(t):
    y = pdf.target(torch.tensor([t], dtype=torch.float64), N_BINS, T_MAX)[0].numpy()
    assert y.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.count_nonzero(y) <= 2
    assert float(y @ NODES) == pytest.approx(t, abs=1e-12)
    smooth = pdf.target(torch.tensor([t], dtype=torch.float64), N_BINS, T_MAX, label_sigma=2.0)[0].numpy()
    assert float(smooth @ NODES) == pytest.approx(t, abs=1e-9)


def test_losses_are_least_at_the_target():
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    y = pdf.target(t, N_BINS, T_MAX, label_sigma=3.0)
    right, wrong = torch.log(y + 1e-12), torch.log(pdf.target(t + 0.01, N_BINS, T_MAX, label_sigma=3.0) + 1e-12)
    for kind in pdf.LOSSES:
        assert pdf.pdf_loss(right, t, T_MAX, kind, 3.0) < pdf.pdf_loss(wrong, t, T_MAX, kind, 3.0)
    # The CRPS respects the order of the grid: mass 0.01 off costs less than mass 0.3 off; cross-entropy cannot tell.
    far = torch.log(pdf.target(t + 0.3, N_BINS, T_MAX) + 1e-12)
    near = torch.log(pdf.target(t + 0.01, N_BINS, T_MAX) + 1e-12)
    assert pdf.pdf_loss(near, t, T_MAX, "crps") < 0.1 * pdf.pdf_loss(far, t, T_MAX, "crps")
    assert pdf.pdf_loss(right, t, T_MAX, "crps", 3.0) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="unknown p"):
        pdf.pdf_loss(right, t, T_MAX, "mse")


def test_columns_of_a_gaussian_pdf_are_the_gaussian_s():
    mu, sigma = np.array([0.3, 0.5004, 0.9]), np.array([0.004, 0.01, 0.02])
    probs = gaussian_probs(mu, sigma)
    cols = pdf.summarise_pdf(probs, T_MAX, mu[None, :] + np.zeros((5, 1)), np.tile(sigma**2, (5, 1)))
    z = np.expm1(mu)
    np.testing.assert_allclose(cols["Z"], z, atol=2e-5)
    # The median and the mode fall between nodes: within 1/50 of a node of the truth.
    np.testing.assert_allclose(pdf.summarise_pdf(probs, T_MAX, np.zeros((2, 3)), np.zeros((2, 3)), "mode")["Z"], z, atol=4e-5)
    np.testing.assert_allclose(pdf.median_t(torch.from_numpy(probs), T_MAX).numpy(), mu, atol=2e-5)
    np.testing.assert_allclose(cols["ZERR"] / (1 + z), sigma, rtol=0.01)
    # Quantiles in t within a fifth of a node.
    np.testing.assert_allclose(np.log1p(cols["Z840"]), mu + sigma, atol=2e-4)
    np.testing.assert_allclose(np.log1p(cols["Z025"]), mu - norm.ppf(0.975) * sigma, atol=2e-4)
    np.testing.assert_allclose(cols["ODDS"], odds(z, sigma * (1 + z)), atol=0.01)
    np.testing.assert_allclose(cols["ZERR_ALE"] / (1 + z), sigma)
    assert np.all(cols["ZERR_EPI"] == 0)


def test_density_on_the_catalogue_grid_integrates_to_one():
    probs = gaussian_probs([0.2, 0.6], [0.003, 0.05])
    grid = z_grid()
    dens = pdf.density_on(probs, T_MAX, grid)
    np.testing.assert_allclose(np.trapezoid(dens, grid, axis=1), 1.0, atol=1e-3)


def test_temperature_widens_the_mixture():
    logits = torch.from_numpy(gaussian_logits([0.5], [0.01]))[None]  # one pass, one source
    # softmax(l / T) of a Gaussian's log is the Gaussian of width sigma sqrt(T).
    for temperature in (0.5, 2.0):
        p = pdf.mixture(logits, temperature).numpy()
        cols = pdf.summarise_pdf(p, T_MAX, np.zeros((2, 1)), np.zeros((2, 1)))
        assert cols["ZERR"][0] / (1 + cols["Z"][0]) == pytest.approx(0.01 * np.sqrt(temperature), rel=0.02)


def test_mc_pdf_without_dropout_is_the_softmax_of_one_pass():
    torch.manual_seed(0)
    model = create_model("slitnet", height=16, width=96, rows=8, channels=(8, 8), kernels=(3, 3), head_hidden=(16,), head="pdf", pdf_bins=64, p_dropout=0.0)
    model.eval()
    x = torch.randn(5, 2, 16, 96)
    probs, means, variances = mc_pdf(model, x, n_mc=4)
    with torch.no_grad():
        direct = torch.softmax(model(x), -1)
    torch.testing.assert_close(probs, direct, rtol=1e-5, atol=1e-7)
    assert means.shape == (4, 5) and torch.all(variances >= 0)
    # A temperature per source, folded into the last layer, divides the logits.
    temperature = torch.tensor([0.3, 0.5, 1.0, 2.0, 4.0])
    probs_t, _, _ = mc_pdf(model, x, n_mc=3, temperature=temperature)
    with torch.no_grad():
        direct_t = torch.softmax(model(x) / temperature[:, None], -1)
    torch.testing.assert_close(probs_t, direct_t, rtol=1e-5, atol=1e-7)


def test_logit_temperature_fit_recovers_the_truth_s_width():
    """Truths drawn from Gaussians sqrt(T0) wider than the predicted ones: the fit finds T0."""
    rng = np.random.default_rng(3)
    n, t0 = 2000, 2.3
    mu, sigma = rng.uniform(0.2, 0.9, n), rng.uniform(0.003, 0.02, n)
    t_true = mu + rng.standard_normal(n) * sigma * np.sqrt(t0)
    logits = torch.from_numpy(gaussian_logits(mu, sigma))[None]
    snr = rng.uniform(1, 30, n)

    def pits_of(powers, temperatures):
        out = np.zeros((len(powers), temperatures.shape[1], n))
        for i, power in enumerate(powers):
            for j, temperature in enumerate(temperatures[i]):
                scale = torch.from_numpy(temperature * (np.clip(snr, 1, 30) / 3) ** power)
                out[i, j] = pdf.cdf_at(pdf.mixture(logits, scale).numpy(), NODES, t_true)
        return out

    temperature, power, before, after = fit_logit_temperature(pits_of, snr)
    assert power == 0.0
    assert temperature == pytest.approx(t0, rel=0.05)
    assert pit_ks(after) < 0.04 < 0.1 < pit_ks(before)
    assert pit_objective(after) < pit_objective(before)


def test_pit_ks_of_uniform_and_of_clumped_values():
    u = (np.arange(1000) + 0.5) / 1000
    assert pit_ks(u) == pytest.approx(0.0005)
    assert pit_ks(np.full(100, 0.5)) == pytest.approx(0.5)


def test_point_score_weighs_every_snr_cut_alike():
    """A point a little worse on the faint majority but half as scattered on the bright sources scores better."""
    from slitcli.nn.pdf_calibration import point_score

    rng = np.random.default_rng(0)
    snr = np.r_[np.full(2000, 2.0), np.full(400, 4.0), np.full(200, 7.0), np.full(100, 20.0)]
    z_true = rng.uniform(0.1, 1.0, snr.size)
    noise = rng.standard_normal(snr.size)
    sharp_faint = z_true + (1 + z_true) * noise * np.where(snr < 3, 0.0100, 0.004)
    sharp_bright = z_true + (1 + z_true) * noise * np.where(snr < 3, 0.0102, 0.002)
    assert point_score(sharp_bright, z_true, snr) < point_score(sharp_faint, z_true, snr)
