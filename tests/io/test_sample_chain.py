"""Several sample files read as one (`SampleChain`): what `calibrate` reads the cutouts of several fields with."""

import numpy as np
import pytest
from astropy.io import fits
from conftest import invoke

from slitcli.errors import InputError
from slitcli.io.samplefile import SampleChain, SampleReader


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    d = tmp_path_factory.mktemp("chain")
    for name, n, seed in (("a.fits", 5, 1), ("b.fits", 3, 2)):
        assert invoke("simulate", "-n", n, "--seed", seed, "-q", "-o", d / name).exit_code == 0
    return d


def test_a_chain_reads_the_files_in_order_as_one_sample(two):
    with SampleReader(two / "a.fits", ("GV", "GI")) as a, SampleReader(two / "b.fits", ("GV", "GI")) as b, SampleChain([two / "a.fits", two / "b.fits"], ("GV", "GI")) as chain:
        assert chain.n == 8 and chain.shape == a.shape
        # A slice across the files' boundary is the two files' slices joined.
        for got, want in zip(chain.read(3, 7), (np.concatenate(p) for p in zip(a.read(3, 5), b.read(0, 2), strict=True)), strict=True):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(chain.direct(4, 6), np.concatenate([a.direct(4, 5), b.direct(0, 1)]))
        starts = [start for start, *_ in chain.iter_chunks(4)]
        assert starts == [0, 4, 5]  # a's chunks, then b's: none straddles
        assert list(chain.sources()["Z_TRUE"]) == [*a.sources()["Z_TRUE"], *b.sources()["Z_TRUE"]]
        assert chain.header("GI") == a.header("GI")


def test_files_of_another_kind_are_refused_naming_the_file(two, tmp_path):
    odd = tmp_path / "odd.fits"
    with fits.open(two / "b.fits") as hdul:
        hdul["GI_SCI"].header["CDELT1"] = hdul["GI_SCI"].header["CDELT1"] * 1.01
        hdul.writeto(odd)
    with SampleChain([two / "a.fits", odd], ("GV", "GI")) as chain, pytest.raises(InputError, match="odd.fits: band GI's wavelength solution differs"):
        chain.header("GI")
    with pytest.raises(InputError, match="missing.fits: file not found"):
        SampleChain([two / "a.fits", tmp_path / "missing.fits"])


def test_calibrate_refuses_several_files_for_the_cnn(two, tmp_path):
    result = invoke("calibrate", two / "a.fits", two / "b.fits", "-o", tmp_path / "m")
    assert result.exit_code != 0 and "one sample file, got 2" in result.output


def test_calibrate_template_on_two_files_uses_the_sources_of_both(tmp_path):
    def calibrated_on(*names):
        result = invoke("calibrate", *(tmp_path / n for n in names), "--template", "-o", tmp_path / ("model_" + "_".join(names)))
        assert result.exit_code == 0, result.output
        return int(result.output.split(f" sources of {', '.join(names)}")[0].rsplit(" ", 1)[1])

    for name, seed in (("a.fits", 3), ("b.fits", 4)):
        assert invoke("simulate", "-n", 40, "--seed", seed, "--mag-max", 21.5, "-q", "-o", tmp_path / name).exit_code == 0
    assert calibrated_on("a.fits", "b.fits") == calibrated_on("a.fits") + calibrated_on("b.fits")
