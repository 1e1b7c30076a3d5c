import astropy.constants as const
import astropy.units as u
import numpy as np
import pytest
import yaml
from astropy.table import Table

from slitcli.config import to_dict
from slitcli.errors import ConfigError
from slitcli.instrument import default_instrument_path, load_instrument, sensitivity


def test_csst_file_loads_with_bands_and_noise(csst):
    assert [b.name for b in csst.bands] == ["GU", "GV", "GI"]
    assert csst.total_exposure_s == 600.0
    assert csst.band("GV").first_order.dispersion(0.0) == pytest.approx(5.25, rel=1e-5)
    assert csst.band("GI").first_order.dispersion(0.0) == pytest.approx(8.1, rel=1e-5)


def test_sensitivity_is_area_throughput_lambda_over_hc(csst):
    band = csst.band("GV")
    wave = 5800.0 * u.AA
    tput = np.interp(5800.0, band.throughput.wave_aa, band.throughput.value)
    # Photons per erg times area: multiplied by f_lambda [erg/s/cm2/A] it gives e-/s per A.
    expected = (31416.0 * u.cm**2 * tput * wave / (const.h * const.c)).to(u.cm**2 / u.erg)
    got = sensitivity(csst, band, band.first_order, np.array([5800.0]))[0]
    assert got == pytest.approx(expected.value, rel=1e-9)
    assert got == pytest.approx(3.76e15, rel=0.01)


@pytest.mark.parametrize("band_name", ["GV", "GI"])
def test_sky_rate_matches_zodiacal_spectrum(csst, band_name):
    """The YAML sky per pixel equals the shipped zodiacal spectrum through the band."""
    from importlib import resources

    zodi = Table.read(str(resources.files("slitcli") / "data" / "zodiacal_sky_v22.1.ecsv"))
    band = csst.band(band_name)
    wave = np.asarray(zodi["wavelength"], float)
    flam_per_arcsec2 = np.asarray(zodi["flam"], float)
    rate_density = flam_per_arcsec2 * csst.pixel_scale_arcsec**2 * sensitivity(csst, band, band.first_order, wave)
    rate = np.trapezoid(rate_density, wave)
    assert rate == pytest.approx(band.sky_e_per_s, rel=0.05)


def _write(tmp_path, data, name="inst.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_lists_valid_keys(tmp_path, csst):
    data = to_dict(csst)
    data["colour"] = "blue"
    with pytest.raises(ConfigError, match=r"unknown key\(s\) colour; valid keys are name, collecting_area_cm2"):
        load_instrument(_write(tmp_path, data))


def test_missing_key_is_named(tmp_path, csst):
    data = to_dict(csst)
    del data["bands"][1]["sky_e_per_s"]
    with pytest.raises(ConfigError, match=r"bands\[1\]: missing required key 'sky_e_per_s'"):
        load_instrument(_write(tmp_path, data))


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: CSST\nbands: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: malformed YAML at line"):
        load_instrument(path)


def test_decreasing_dispersion_is_refused(tmp_path, csst):
    data = to_dict(csst)
    data["bands"][1]["orders"][0]["dldp"] = [6000.0, -5.0]
    with pytest.raises(ConfigError, match="dldp must give a wavelength increasing"):
        load_instrument(_write(tmp_path, data))


def test_wrong_type_is_named(tmp_path, csst):
    data = to_dict(csst)
    data["n_exposures"] = "four"
    with pytest.raises(ConfigError, match="n_exposures: expected an integer"):
        load_instrument(_write(tmp_path, data))


def test_default_path_is_the_shipped_file():
    assert default_instrument_path().name == "csst.yaml"
    assert default_instrument_path().exists()
