"""``slitcli predict EXPOSURES --catalog``: cutting and predicting in one pass, and what both routes do with CONTAM."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import assert_one_line_error, assert_usage_error, invoke

from slitcli.fields.field_sample import FieldSample
from slitcli.io.layout import DQ_DO_NOT_USE
from slitcli.io.samplefile import FCONTAM, SampleReader, subtract_contamination


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A small simulated field and its cutout file (with --direct: CONTAM and DIRECT)."""
    root = tmp_path_factory.mktemp("fieldpredict")
    result = invoke("simulate", "--field", "--size", "400x300", "--seed", "5", "-q", "-o", root / "f")
    assert result.exit_code == 0, result.output
    f = root / "f"
    sample = root / "sample.fits"
    result = invoke("cutout", *sorted(f.glob("exposure_*.fits")), "--catalog", f / "catalog.fits", "--direct", f / "direct.fits", "-q", "-o", sample)
    assert result.exit_code == 0, result.output
    return f, sample


def field_args(f, direct=True):
    return [*sorted(f.glob("exposure_*.fits")), "--catalog", f / "catalog.fits", *(["--direct", f / "direct.fits"] if direct else [])]


def test_stream_reads_exactly_what_cutout_writes(field):
    """Chunk for chunk, FieldSample gives the cutout file's SCI/ERR/DQ (and DIRECT), with and without subtracting CONTAM."""
    f, sample = field
    exposures = sorted(f.glob("exposure_*.fits"))
    for mode in ("ignore", "subtract"):
        with SampleReader(sample, contamination=mode) as a, FieldSample(exposures, f / "catalog.fits", direct_path=f / "direct.fits", contamination=mode) as b:
            assert (a.n, a.shape, a.bands) == (b.n, b.shape, b.bands) and b.contamination_model == a.contamination_model == "FLAT_FLAMBDA"
            assert list(a.sources()["SOURCE_ID"]) == list(b.sources()["SOURCE_ID"])
            for (s0, *x), (s1, *y) in zip(a.iter_chunks(7), b.iter_chunks(7), strict=True):
                assert s0 == s1
                for u, v in zip(x, y, strict=True):
                    np.testing.assert_array_equal(u, v)
            np.testing.assert_array_equal(a.direct(0, a.n), b.direct(0, b.n))
            assert a.header("GI") == b.header("GI")
            np.testing.assert_allclose(a.sensitivity("GV")[1], b.sensitivity("GV")[1], rtol=1e-12)
            assert a.bad_pixels == b.bad_pixels


def test_subtract_contamination_is_sci_less_contam_with_grizli_variance():
    rng = np.random.default_rng(0)
    sci = rng.normal(size=(3, 2, 4, 5)).astype(np.float32)
    err = rng.uniform(0.5, 1.0, sci.shape).astype(np.float32)
    contam = rng.uniform(0, 3, sci.shape).astype(np.float32)
    dq = np.zeros(sci.shape, np.int32)
    dq[0, 1, 2, 3] = DQ_DO_NOT_USE
    s, e = sci.copy(), err.copy()
    subtract_contamination(s, e, dq, contam)
    good = dq == 0
    np.testing.assert_allclose(s[good], (sci - contam)[good], rtol=1e-6)
    np.testing.assert_allclose(e[good], np.sqrt(err**2 + (FCONTAM * contam) ** 2)[good], rtol=1e-6)
    assert s[0, 1, 2, 3] == sci[0, 1, 2, 3] and e[0, 1, 2, 3] == err[0, 1, 2, 3]


def test_reader_subtracts_contam_only_when_asked(field):
    f, sample = field
    with fits.open(sample) as h:
        sci, contam = h["GI_SCI"].data.astype(np.float32), h["GI_CONTAM"].data
    assert np.abs(contam).max() > 0
    with SampleReader(sample, ("GI",), contamination="subtract") as r:
        got, _, got_dq = r.read(0, r.n)
    good = (got_dq[:, 0] & DQ_DO_NOT_USE) == 0
    np.testing.assert_allclose(got[:, 0][good], (sci - contam)[good], atol=1e-6)
    with SampleReader(sample, ("GI",)) as r:
        np.testing.assert_array_equal(r.read(0, r.n)[0][:, 0][good], sci[good])


@pytest.mark.parametrize("method", ["cnn", "template"])
def test_predict_from_exposures_equals_cutout_then_predict(field, tmp_path, method):
    """One pass from the exposures gives the very catalogue the cutout file gives; the catalogue says what was done with contamination."""
    f, sample = field
    opts = ["--method", method, "--n-mc", "4", "--device", "cpu", "-q"]
    a, b = tmp_path / "file.ecsv", tmp_path / "stream.ecsv"
    result = invoke("predict", sample, *opts, "-o", a)
    assert result.exit_code == 0, result.output
    result = invoke("predict", *field_args(f), *opts, "-o", b)
    assert result.exit_code == 0, result.output
    ta, tb = Table.read(a), Table.read(b)
    assert len(ta) == len(tb) > 5
    for c in ("SOURCE_ID", "Z", "ZERR", "SNR_GI", "ZWARN", "Z500"):
        np.testing.assert_array_equal(ta[c], tb[c])
    assert ta.meta["CONTAM"] == tb.meta["CONTAM"] == "SUBTRACT" and tb.meta["CONTMODL"] == "FLAT_FLAMBDA"
    assert tb.meta["CATALOG"] == "catalog.fits" and tb.meta["NSKIPPED"] >= 1 and tb.meta["INPUTS"].startswith("exposure_GI_01.fits")


def test_contam_ignore_changes_the_data_the_routes_see(field, tmp_path):
    f, sample = field
    opts = ["--n-mc", "4", "--device", "cpu", "-q"]
    a, b = tmp_path / "sub.ecsv", tmp_path / "ign.ecsv"
    assert invoke("predict", *field_args(f), *opts, "-o", a).exit_code == 0
    assert invoke("predict", *field_args(f), *opts, "--contam", "ignore", "-o", b).exit_code == 0
    ta, tb = Table.read(a), Table.read(b)
    assert tb.meta["CONTAM"] == "IGNORE" and ta.meta["CONTAM"] == "SUBTRACT"
    assert np.any(ta["Z"] != tb["Z"])
    # Without a direct image there is no model: nothing to subtract, and the catalogue says so.
    c = tmp_path / "nomodel.ecsv"
    assert invoke("predict", *field_args(f, direct=False), *opts, "-o", c).exit_code == 0
    tc = Table.read(c)
    assert tc.meta["CONTAM"] == "NONE" and tc.meta["CONTMODL"] == "NONE"
    np.testing.assert_array_equal(tc["Z"], tb["Z"])


def test_bad_field_inputs_are_one_line_errors(field, tmp_path):
    f, _ = field
    out = tmp_path / "z.ecsv"
    with fits.open(f / "catalog.fits") as h:
        t = Table(h["SOURCES"].data)
    t.remove_column("RA")
    cat = tmp_path / "cat.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(t, name="SOURCES")]).writeto(cat)
    result = invoke("predict", *sorted(f.glob("exposure_*.fits")), "--catalog", cat, "-o", out)
    assert_one_line_error(result, "cat.fits", "RA")
    assert not out.exists()
    assert_usage_error(invoke("predict", *field_args(f, direct=False), "--method", "template", "-o", out), "--direct")
    assert_usage_error(invoke("predict", f / "catalog.fits", "--direct", f / "direct.fits", "-o", out), "--catalog")
    assert not out.exists()


def test_refine_streams_like_cutout_refine(field, tmp_path):
    """predict --refine from the exposures equals cutout --refine then predict; the catalogue names the refined model."""
    f, _ = field
    sample = tmp_path / "refined.fits"
    result = invoke("cutout", *sorted(f.glob("exposure_*.fits")), "--catalog", f / "catalog.fits", "--direct", f / "direct.fits", "--refine", "-q", "-o", sample)
    assert result.exit_code == 0, result.output
    opts = ["--n-mc", "4", "--device", "cpu", "-q"]
    a, b = tmp_path / "file.ecsv", tmp_path / "stream.ecsv"
    assert invoke("predict", sample, *opts, "-o", a).exit_code == 0
    assert invoke("predict", *field_args(f), "--refine", *opts, "-o", b).exit_code == 0
    ta, tb = Table.read(a), Table.read(b)
    np.testing.assert_array_equal(ta["Z"], tb["Z"])
    assert ta.meta["CONTMODL"] == tb.meta["CONTMODL"] == "REFINED_POLY2"
    assert_usage_error(invoke("predict", *field_args(f, direct=False), "--refine", "-o", tmp_path / "x.ecsv"), "--direct")
