"""The training stream: reproducible items, nuisances that do what they say."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml

from slitcli.config import from_mapping
from slitcli.errors import ConfigError
from slitcli.io.layout import DQ_DO_NOT_USE, DQ_JUMP_DET
from slitcli.nn.stream import StreamConfig, TrainingStream
from slitcli.sim.noise import noise_sigma
from slitcli.sim.seds import ab_magnitude
from slitcli.sim.simulate import SimulateConfig, band_snr, simulate_band

NONE = dict(p_neighbour=0.0, p_sky_residual=0.0, p_wavelength_shift=0.0, p_cosmic_rays=0.0)


def stream(**changes):
    return TrainingStream(StreamConfig(**{"batch_size": 4, "seed": 7, **changes}))


def test_config_from_yaml():
    text = "batch_size: 16\np_neighbour: 0.5\nbands: [GV, GI]\npopulation:\n  mag_i_max: 23.0\n"
    cfg = from_mapping(StreamConfig, yaml.safe_load(text), "stream.yaml")
    assert (cfg.batch_size, cfg.p_neighbour, cfg.population.mag_i_max, cfg.p_cosmic_rays) == (16, 0.5, 23.0, 0.3)
    with pytest.raises(ConfigError, match=r"stream.yaml: p_sky_residual must lie in \[0, 1\]"):
        from_mapping(StreamConfig, {"p_sky_residual": 1.5}, "stream.yaml")
    with pytest.raises(ConfigError, match="unknown key"):
        from_mapping(StreamConfig, {"p_neigbour": 0.1}, "stream.yaml")


def test_item_contents_and_reproducible():
    s = stream()
    a, b = s.item(3), stream().item(3)
    assert a["sci"].shape == (4, 2, 40, 480) and a["sci"].dtype == torch.float32 and a["dq"].dtype == torch.int32
    for key in ("sci", "err", "dq", "t", "snr"):
        assert torch.equal(a[key], b[key])
    assert torch.allclose(a["t"].double(), torch.log1p(a["z"]), atol=1e-6)
    assert not torch.equal(a["sci"], s.item(4)["sci"])
    # The SNR is simulate's SNR_GI (NumPy band_snr with the source's own expected image).
    out = s.render(s.draw(3), keep_model=True)
    gi = s.layouts[1]
    for i in range(4):
        ref = band_snr(*(out[k][i, 1].double().numpy() for k in ("sci", "err", "dq", "model")), gi)
        assert out["snr"][i].item() == pytest.approx(ref, rel=1e-4)


def test_same_stream_whatever_the_workers():
    s = TrainingStream(StreamConfig(batch_size=2, seed=3), stop=5)
    runs = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(s, batch_size=None, num_workers=workers)
        runs.append(list(loader))
    assert [it["index"] for it in runs[0]] == [0, 1, 2, 3, 4]
    assert sorted(int(it["index"]) for it in runs[1]) == [0, 1, 2, 3, 4]
    by_index = {int(it["index"]): it for it in runs[1]}
    for it in runs[0]:
        other = by_index[int(it["index"])]
        for key in ("sci", "err", "dq", "z"):
            assert torch.equal(it[key], other[key])


def test_neighbour_adds_its_light_before_the_noise():
    s0, s1 = stream(**NONE), stream(**{**NONE, "p_neighbour": 1.0})
    d0, d1 = s0.draw(0), s1.draw(0)
    assert len(d1.neighbours) == 4 and len(d0.neighbours) == 0
    out0, out1 = s0.render(d0, keep_model=True), s1.render(d1, keep_model=True)
    assert torch.equal(out0["model"], out1["model"])  # the sources themselves are unchanged
    inst = s1.instrument
    for j, i in enumerate(d1.neighbour_of):
        nb = d1.neighbours[j]
        # i-band flux ratio as drawn, in the documented range
        ratio = 10 ** (-0.4 * (ab_magnitude(nb.wave_aa, nb.flam) - d1.sources[i].mag_i))
        assert ratio == pytest.approx(d1.neighbour_ratio[j], rel=1e-6) and 0.5 <= ratio <= 3.0
        assert 4 <= abs(d1.neighbour_rows[j]) <= 12 and abs(d1.neighbour_columns[j]) <= 100
        for b, lay in enumerate(s1.layouts):
            # Reference: the Numba kernel with the neighbour's direct position moved by the offsets.
            moved = dataclasses.replace(lay, y_direct_pix=lay.y_direct_pix + d1.neighbour_rows[j])
            ref = simulate_band(d1.neighbour_stamps[j], nb, inst, moved, SimulateConfig(wavelength_shift_pix=float(d1.neighbour_columns[j])))
            got = out1["neighbour_model"][i, b].double().numpy()
            assert ref.sum() > 0
            assert np.abs(got - ref).max() <= 1e-4 * ref.max()
            # The noise is drawn once, from the summed light: ERR counts the sky once and
            # SCI scatters about source + neighbour.
            total = out1["model"][i, b].double().numpy() + got
            assert np.allclose(out1["err"][i, b].numpy(), noise_sigma(total, inst, lay.band), rtol=1e-5)
            resid = (out1["sci"][i, b].double().numpy() - total).sum()
            assert abs(resid) < 5 * np.sqrt((out1["err"][i, b].double().numpy() ** 2).sum())


def test_sky_residual_offsets_sci_not_err():
    s0, s1 = stream(**NONE), stream(**{**NONE, "p_sky_residual": 1.0})
    d0, d1 = s0.draw(1), s1.draw(1)
    assert np.all(d0.sky_offset == 0) and np.all(np.abs(d1.sky_offset) <= 0.03) and np.all(d1.sky_offset != 0)
    out0, out1 = s0.render(d0, keep_model=True), s1.render(d1, keep_model=True)
    assert torch.equal(out0["err"], out1["err"])
    for b, lay in enumerate(s1.layouts):
        for i in range(4):
            # Mean of SCI minus the expected source image: the drawn offset x the band's sky.
            resid = (out1["sci"][i, b] - out1["model"][i, b]).double()
            sigma = out1["err"][i, b].double().pow(2).mean().sqrt() / np.sqrt(resid.numel())
            assert abs(resid.mean().item() - d1.sky_offset[i, b] * lay.band.sky_e_per_s) < 5 * sigma.item()


def test_wavelength_shift_moves_a_narrow_line():
    s = stream(**{**NONE, "p_wavelength_shift": 1.0})
    d = s.draw(2)
    assert np.all(d.shift_pix != 0) and np.all(np.abs(d.shift_pix) <= 2.0)
    gi = s.layouts[1]
    wave = d.sources[0].wave_aa
    line = np.exp(-0.5 * ((wave - 0.5 * (gi.band.wave_min_aa + gi.band.wave_max_aa)) / 2.0) ** 2) * 1e-16
    for src in d.sources:
        src.flam = line
    shifted = s.render(d, keep_model=True)["model"][:, 1].double()
    drawn, d.shift_pix = d.shift_pix, np.zeros(4)
    still = s.render(d, keep_model=True)["model"][:, 1].double()
    x = torch.arange(gi.shape[1], dtype=torch.float64)
    for i in range(4):
        c1 = (shifted[i].sum(0) * x).sum() / shifted[i].sum()
        c0 = (still[i].sum(0) * x).sum() / still[i].sum()
        assert (c1 - c0).item() == pytest.approx(drawn[i], abs=0.01)


def test_cosmic_rays_flagged_where_their_charge_lands():
    s0, s1 = stream(**NONE), stream(**{**NONE, "p_cosmic_rays": 1.0})
    out0, out1 = s0.item(5), s1.item(5)
    assert torch.equal(out0["err"], out1["err"])
    flag = DQ_JUMP_DET | DQ_DO_NOT_USE
    hit = (out1["dq"] & flag) == flag
    assert not ((out0["dq"] & DQ_JUMP_DET) != 0).any()
    diff = (out1["sci"] - out0["sci"]).double()
    assert torch.equal(diff != 0, hit)  # the charge lands exactly on the flagged pixels
    assert (diff >= 0).all()
    t = s1.instrument.total_exposure_s
    for i in range(4):
        for b in range(2):
            # ~14 events per cutout at 1.2 /cm2/s over 600 s, each >= 500 e-
            n_hit = int(hit[i, b].sum())
            assert 10 <= n_hit <= 2000
            assert diff[i, b].sum().item() * t >= 500.0


def test_attenuation_curves_match_their_definitions():
    from slitcli.sim.sed_variation import attenuation, calzetti_k, smc_k

    for k, rv in ((calzetti_k, 4.05), (smc_k, 2.74)):
        assert k(np.array([5500.0]))[0] == pytest.approx(rv, abs=0.01)  # A_V / E(B-V) = R_V
        assert (k(np.array([4400.0])) - k(np.array([5500.0])))[0] == pytest.approx(1.0, abs=0.02)  # E(B-V)
    # Calzetti (2000) eq. 4 at 1500 Angstrom, by hand: 2.659 (-2.156 + 1.509/0.15 - 0.198/0.15^2 + 0.011/0.15^3) + 4.05
    assert calzetti_k(np.array([1500.0]))[0] == pytest.approx(10.33, abs=0.01)
    assert smc_k(np.array([1500.0]))[0] > calzetti_k(np.array([1500.0]))[0]  # steeper in the UV
    # observed frame: A at lambda_obs = k(lambda_obs / (1 + z)) E(B-V)
    t = attenuation(np.array([5500.0 * 1.5]), 0.5, 0.2, "calzetti")[0]
    assert -2.5 * np.log10(t) == pytest.approx(0.2 * 4.05, abs=0.003)


def test_added_lines_carry_the_drawn_flux():
    from slitcli.sim.sed_variation import LINES, add_lines, line_fluxes

    wave = np.arange(2300.0, 10802.0, 2.0)
    flam = np.full(wave.size, 1e-18)
    z, ew, cont = 0.3, 80.0, 2e-18
    ratios = {"OIII5007/HBETA": 0.5, "NII6584/HALPHA": -0.5, "SII/HALPHA": -0.7, "OII3727/HBETA": 0.2}
    fluxes = line_fluxes((1 + z) * ew * cont, ratios)  # observed EW = (1 + z) EW_rest
    assert fluxes["HALPHA"] / fluxes["HBETA"] == pytest.approx(2.86)  # Case B
    assert fluxes["OIII5007"] / fluxes["HBETA"] == pytest.approx(10**0.5)
    assert fluxes["OIII5007"] / fluxes["OIII4959"] == pytest.approx(2.98)
    assert fluxes["NII6584"] / fluxes["HALPHA"] == pytest.approx(10**-0.5)
    assert (fluxes["SII6717"] + fluxes["SII6731"]) / fluxes["HALPHA"] == pytest.approx(10**-0.7)
    added = add_lines(wave, flam, z, cont, ew, ratios) - flam
    assert added.min() >= 0
    assert added.sum() * 2.0 == pytest.approx(sum(fluxes.values()), rel=1e-9)  # every line on the grid, exactly
    # [OIII]5007 stands alone (4959 is 62 Angstrom = 13 sigma away at z = 0.3): all its flux within 6 sigma
    centre = LINES["OIII5007"] * (1 + z)
    sigma = centre * 150.0 / 299792.458
    near = np.abs(wave - centre) < 6 * sigma
    assert added[near].sum() * 2.0 == pytest.approx(fluxes["OIII5007"], rel=1e-6)
    assert wave[near][np.argmax(added[near])] == pytest.approx(centre, abs=1.0)
    # a line off the grid (H-alpha at z = 1.0 lies at 13126 Angstrom) adds nothing
    far = add_lines(wave, flam, 1.0, cont, ew, ratios) - flam
    assert far.sum() * 2.0 == pytest.approx(sum(v for k, v in line_fluxes(2 * ew * cont, ratios).items() if LINES[k] * 2 < 10700), rel=1e-9)


def test_added_lines_sit_where_the_library_seds_have_theirs():
    # The kcorrect templates' own emission lines are in vacuum; an added line in air would
    # sit 1.8 Angstrom blueward of H-alpha's (2.8e-4 in ln(1 + z)): a false redshift signal.
    from slitcli.sim.sed_variation import LINES
    from slitcli.sim.seds import load_sed_library

    library = load_sed_library()
    wave, flux = library.rest_wave_aa, library.templates[0]
    for name in ("HALPHA", "OIII5007", "NII6584"):
        core = np.abs(wave - LINES[name]) < 8.0
        side = (np.abs(wave - LINES[name]) > 12.0) & (np.abs(wave - LINES[name]) < 30.0)
        excess = flux[core] - np.median(flux[side])
        centroid = np.sum(wave[core] * excess) / np.sum(excess)
        assert centroid == pytest.approx(LINES[name], abs=0.5), name


def test_stream_dust_follows_the_curve_and_keeps_the_magnitude():
    plain = stream(**{**NONE, "p_dust": 0.0, "p_lines": 0.0}).draw(6)
    dusty = stream(**{**NONE, "p_dust": 1.0, "p_lines": 0.0}).draw(6)
    lined = stream(**{**NONE, "p_dust": 0.0, "p_lines": 1.0}).draw(6)
    from slitcli.sim.sed_variation import attenuation

    assert sorted(set(dusty.curve)) <= ["calzetti", "smc"] and np.all((dusty.ebv > 0) & (dusty.ebv <= 0.5))
    for a, b, c in zip(plain.sources, dusty.sources, lined.sources):
        assert a.sed_id.startswith("KCORRECT_GST:") and a.sed_id == b.sed_id  # the kcorrect library only
        ratio = b.flam / a.flam
        ok = a.flam > 0
        shape = ratio[ok] / attenuation(a.wave_aa[ok], a.z, dusty.ebv[plain.sources.index(a)], dusty.curve[plain.sources.index(a)])
        assert np.allclose(shape, shape[0], rtol=1e-9)
        for s in (b, c):
            assert ab_magnitude(s.wave_aa, s.flam) == pytest.approx(a.mag_i, abs=1e-9)
        assert np.abs(c.flam / a.flam.max() - a.flam / a.flam.max()).max() > 1e-3  # lines change the spectrum


def test_tabulated_distances_equal_astropys():
    from astropy.cosmology import Planck18

    from slitcli.sim.seds import distance_modulus, luminosity_distance_mpc

    z = np.array([0.005, 0.0213, 0.4567, 1.0001, 1.999, 2.99])
    np.testing.assert_allclose(luminosity_distance_mpc(z), Planck18.luminosity_distance(z).to_value("Mpc"), rtol=1e-7)
    np.testing.assert_allclose(distance_modulus(z), Planck18.distmod(z).value, atol=1e-6)
    np.testing.assert_allclose(luminosity_distance_mpc(3.5), Planck18.luminosity_distance(3.5).to_value("Mpc"), rtol=1e-12)


def test_sersic_image_half_light_radius_and_clumps():
    from slitcli.sim.sed_variation import clumpy_sersic_image

    scale = 0.05
    for n, r_e in ((1.0, 0.4), (2.0, 0.3), (0.5, 0.6)):
        image = clumpy_sersic_image(n, r_e, 1.0, 0.0)
        c = 0.5 * (image.shape[0] - 1)
        y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] - c
        r = np.hypot(x, y).ravel() * scale
        order = np.argsort(r)
        half = r[order][np.searchsorted(np.cumsum(image.ravel()[order]), 0.5)]
        assert half == pytest.approx(r_e, rel=0.05)
    # a clump holds its fraction of the light around its position; the total stays 1
    image = clumpy_sersic_image(1.0, 0.3, 0.5, 0.4, [(1.0, -0.8, 0.08, 0.1)])
    assert image.sum() == pytest.approx(1.0)
    c = 0.5 * (image.shape[0] - 1)
    iy, ix = int(round(c - 0.8 / scale)), int(round(c + 1.0 / scale))
    around = image[iy - 8 : iy + 9, ix - 8 : ix + 9].sum()
    assert 0.1 < around < 0.1 + 0.01
    # axis ratio: the light's second moments along the axes in the ratio q^2
    flat = clumpy_sersic_image(1.0, 0.5, 0.5, 0.0)
    y, x = np.mgrid[0 : flat.shape[0], 0 : flat.shape[1]] - 0.5 * (flat.shape[0] - 1)
    assert (flat * y**2).sum() / (flat * x**2).sum() == pytest.approx(0.25, rel=0.05)


def test_stream_shapes_scaled_or_parametric():
    base = stream(**{**NONE, "p_size_scale": 0.0, "p_parametric": 0.0}).draw(8)
    scaled = stream(**{**NONE, "p_size_scale": 1.0, "p_parametric": 0.0}).draw(8)
    para = stream(**{**NONE, "p_parametric": 1.0}).draw(8)

    def spread(stamp):
        y, x = np.mgrid[0 : stamp.shape[0], 0 : stamp.shape[1]]
        w = stamp / stamp.sum()
        return (w * ((x - (w * x).sum()) ** 2 + (y - (w * y).sum()) ** 2)).sum()

    for i, (a, b) in enumerate(zip(base.sources, scaled.sources)):
        factor = b.pixel_scale_arcsec / a.pixel_scale_arcsec
        assert 0.7 <= factor <= 1.5 and np.array_equal(a.image, b.image)
        # a magnified galaxy spreads its light wider on the detector, a shrunk one less
        assert (spread(scaled.stamps[i]) > spread(base.stamps[i])) == (factor > 1)
    assert all(s.shape_id.startswith("SERSIC:") for s in para.sources)
    assert all(abs(st.sum() - 1) < 0.05 for st in para.stamps)  # the light fits the stamp
