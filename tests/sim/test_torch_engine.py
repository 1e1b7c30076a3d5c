"""The Torch engine against the Numba engine: same sources, same noiseless cutouts, its own noise."""

import dataclasses

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import TINY_SIM_YAML, gaussian_blob, invoke, make_source

from slitcli.sim.population import PopulationConfig, draw_sources
from slitcli.sim.simulate import SimulateConfig, simulate_chunk
from slitcli.sim.torch_engine import simulate_chunk_torch


@pytest.fixture(scope="module")
def sources():
    """Three default-population galaxies, and one on its own coarser wavelength grid."""
    drawn = draw_sources(PopulationConfig(), 3, 1, np.random.default_rng(5))
    wave = np.arange(3000.0, 11000.0, 1.7)
    flam = 4e-18 * (wave / 5000.0) ** -1.5 + 3e-16 * np.exp(-0.5 * ((wave - 6000.0) / 2.0) ** 2) / np.sqrt(2 * np.pi * 4.0)
    return [*drawn, make_source(flam, wave, gaussian_blob(15, 1.5, 2.3, -1.2), source_id=9)]


def assert_cutouts_agree(got, ref):
    """Per cutout: max |diff| <= 1e-4 of the peak, sum to 1e-5."""
    for g, r in zip(got.astype(float), ref.astype(float)):
        assert r.max() > 0
        assert np.abs(g - r).max() <= 1e-4 * r.max()
        assert g.sum() == pytest.approx(r.sum(), rel=1e-5)


@pytest.mark.parametrize(
    "changes", [{}, {"wavelength_shift_pix": 1.3, "zeroth_order": True, "cutout_width": 700}], ids=["default", "shift-zeroth"]
)
def test_noiseless_chunk_equals_the_numba_engine(csst, sources, changes):
    config = dataclasses.replace(SimulateConfig(noiseless=True), **changes)
    ref = simulate_chunk(sources, 0, csst, config, np.random.SeedSequence(1))
    got = simulate_chunk_torch(sources, 0, csst, config, np.random.SeedSequence(1))
    np.testing.assert_array_equal(got.direct, ref.direct)
    for band in config.bands:
        assert_cutouts_agree(got.model[band], ref.model[band])
        np.testing.assert_array_equal(got.sci[band], got.model[band])
        np.testing.assert_allclose(got.err[band], ref.err[band], rtol=1e-6)
        np.testing.assert_array_equal(got.dq[band], ref.dq[band])
        np.testing.assert_allclose(got.snr[band], ref.snr[band], rtol=1e-6)


def test_noisy_chunk_is_normalised_by_err_and_keeps_its_seed(csst, sources):
    config = SimulateConfig()
    chunk = simulate_chunk_torch(sources, 0, csst, config, np.random.SeedSequence(3))
    for band in config.bands:
        usable = chunk.dq[band] == 0
        pull = ((chunk.sci[band].astype(float) - chunk.model[band]) / chunk.err[band])[usable]
        assert pull.size > 70_000
        assert np.std(pull) == pytest.approx(1.0, abs=0.02)
    # Source 0's cutouts depend on the seed and its index only, not on the rest of the chunk.
    alone = simulate_chunk_torch(sources[:1], 0, csst, config, np.random.SeedSequence(3))
    np.testing.assert_array_equal(alone.sci["GV"][0], chunk.sci["GV"][0])


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("engine") / "tiny.yaml"
    path.write_text(TINY_SIM_YAML + "chunk_size: 2\n")  # three chunks of the six sources
    return path


def simulate(tmp_path, tiny_config, name, *options):
    out = tmp_path / f"{name}.fits"
    result = invoke("simulate", "-n", 6, "--seed", 4, "--config", tiny_config, "-q", "-o", out, *options)
    assert result.exit_code == 0, result.output
    return out


def test_simulate_engines_write_the_same_sources_and_images(tmp_path, tiny_config):
    numba = simulate(tmp_path, tiny_config, "numba", "--noiseless")
    torch_ = simulate(tmp_path, tiny_config, "torch", "--noiseless", "--engine", "torch")
    a, b = Table.read(numba, hdu="SOURCES"), Table.read(torch_, hdu="SOURCES")
    assert a.colnames == b.colnames
    for name in a.colnames:  # SNR_* too: measured on images equal to round-off, stored as float32
        assert list(a[name]) == list(b[name]), name
    with fits.open(numba) as fa, fits.open(torch_) as fb:
        assert (fa[0].header["ENGINE"], fb[0].header["ENGINE"]) == ("numba", "torch")
        assert [h.name for h in fa] == [h.name for h in fb]
        for band in ("GV", "GI"):
            assert_cutouts_agree(fb[f"{band}_SCI"].data, fa[f"{band}_SCI"].data)
            np.testing.assert_allclose(fb[f"{band}_ERR"].data, fa[f"{band}_ERR"].data, rtol=1e-6)
            np.testing.assert_array_equal(fb[f"{band}_DQ"].data, fa[f"{band}_DQ"].data)
            assert fa[f"{band}_SCI"].header == fb[f"{band}_SCI"].header


def test_torch_engine_same_seed_same_data_any_worker_count(tmp_path, tiny_config):
    one = simulate(tmp_path, tiny_config, "one", "--engine", "torch")
    two = simulate(tmp_path, tiny_config, "two", "--engine", "torch", "-j", 2)
    numba = simulate(tmp_path, tiny_config, "numba")
    with fits.open(one) as a, fits.open(two) as b, fits.open(numba) as c:
        for ext in range(1, len(a)):
            assert a[ext].data.tobytes() == b[ext].data.tobytes(), a[ext].name
        # Its own noise draws: not the Numba engine's.
        assert a["GV_SCI"].data.tobytes() != c["GV_SCI"].data.tobytes()


@pytest.mark.parametrize("poisson", [True, False], ids=["poisson", "gaussian"])
def test_render_is_the_same_whatever_the_batch(csst, sources, poisson):
    """float32, as a training stream renders: a batch of 3 = batches of 1 and 2, bit for bit."""
    import torch

    from slitcli.io.layout import band_layout
    from slitcli.sim.noise_torch import source_generators
    from slitcli.sim.simulate import direct_stamp
    from slitcli.sim.torch_engine import render

    config = SimulateConfig()
    layouts = [band_layout(csst.band(b), (40, 480)) for b in config.bands]
    stamps = torch.tensor(np.stack([direct_stamp(s, csst, 64) for s in sources[:3]]), dtype=torch.float32)
    flam = np.stack([s.flam for s in sources[:3]])
    wave, seed = sources[0].wave_aa, np.random.SeedSequence(9)

    def run(members):
        gens = source_generators(seed, members)
        return render(stamps[members], wave, flam[members], csst, layouts, config, gens, poisson=poisson)

    whole, parts = run([0, 1, 2]), [run([0]), run([1, 2])]
    for band in config.bands:
        for field in ("model", "sci", "err", "dq"):
            joined = torch.cat([getattr(p[band], field) for p in parts])
            assert torch.equal(getattr(whole[band], field), joined), (band, field)
        assert whole[band].sci.dtype == torch.float32


def test_per_source_shifts_move_each_spectrum_as_the_numba_engine_does(csst, sources):
    import torch

    from slitcli.io.layout import band_layout
    from slitcli.sim.simulate import direct_stamp, simulate_band
    from slitcli.sim.torch_engine import render

    config = SimulateConfig(noiseless=True, bands=("GI",))
    layout = band_layout(csst.band("GI"), (40, 480))
    stamps = np.stack([direct_stamp(s, csst, 64) for s in sources[:3]])
    shifts = np.array([0.0, 1.7, -2.0])
    images = render(torch.tensor(stamps), sources[0].wave_aa, np.stack([s.flam for s in sources[:3]]), csst, [layout], config, None, shift_pix=shifts)
    for k, shift in enumerate(shifts):
        ref = simulate_band(stamps[k], sources[k], csst, layout, dataclasses.replace(config, wavelength_shift_pix=shift))
        assert_cutouts_agree(images["GI"].model[k : k + 1].numpy(), ref[None])
    with pytest.raises(ValueError, match="generator"):
        render(torch.tensor(stamps), sources[0].wave_aa, np.stack([s.flam for s in sources[:3]]), csst, [layout], SimulateConfig(), None)
