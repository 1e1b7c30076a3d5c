"""Sample files and augment outputs as FITS tools read them: checksums, fitsverify, STILTS, provenance."""

import re
import warnings

import pytest
from astropy.io import fits
from ecosystem_tools import fitsverify, stilts_columns
from typer.testing import CliRunner

from slitcli import __version__
from slitcli.cli import app
from slitcli.io.columns import column_description, column_unit

runner = CliRunner()
SIM = "cutout_height: 16\ncutout_width: 96\nstamp_size: 32\n"


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("samplefile")
    (d / "sim.yaml").write_text(SIM)
    invoke("simulate", "-n", 6, "--seed", 3, "--config", d / "sim.yaml", "-q", "-o", d / "sample.fits")
    invoke("augment", d / "sample.fits", "--copies", 3, "-q", "-o", d / "augmented.fits")
    return {"sample": d / "sample.fits", "augmented": d / "augmented.fits"}


@pytest.mark.parametrize("which", ["sample", "augmented"])
def test_every_hdu_has_a_valid_checksum(files, which):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns on a checksum mismatch
        with fits.open(files[which], checksum=True) as hdus:
            assert len(hdus) >= 10
            for hdu in hdus:
                assert hdu.verify_checksum() == 1 and hdu.verify_datasum() == 1, hdu.name
                assert hdu.header.count("CHECKSUM") == 1 and hdu.header.count("DATASUM") == 1, hdu.name


@pytest.mark.parametrize("which", ["sample", "augmented"])
def test_fitsverify_finds_nothing(files, which):
    n_warnings, n_errors, report = fitsverify(files[which])
    assert (n_warnings, n_errors) == (0, 0), report


@pytest.mark.parametrize("which", ["sample", "augmented"])
def test_every_card_has_a_comment(files, which):
    with fits.open(files[which]) as hdus:
        for hdu in hdus:
            for card in hdu.header.cards:
                if card.keyword not in ("COMMENT", "HISTORY", ""):
                    assert card.comment.strip(), f"{which} {hdu.name}: {card.keyword} has no comment"


@pytest.mark.parametrize("which", ["sample", "augmented"])
def test_primary_provenance(files, which):
    header = fits.getheader(files[which], 0)
    assert header["ORIGIN"] == "slitcli" and header["SWVERS"] == __version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", header["DATE"])
    # fitsio's two boilerplate COMMENT lines appear once, even in a copied header.
    assert sum("Flexible Image Transport System" in c for c in header["COMMENT"]) == 1


@pytest.mark.parametrize(("which", "hdu"), [("sample", "SOURCES"), ("sample", "GI_SENS"), ("augmented", "SOURCES"), ("augmented", "AUGMENT")])
def test_tables_carry_units_and_descriptions(files, which, hdu):
    header = fits.getheader(files[which], hdu)
    names = [header[f"TTYPE{i}"] for i in range(1, header["TFIELDS"] + 1)]
    for i, name in enumerate(names, start=1):
        assert header[f"TCOMM{i}"] == column_description(name), name
        assert header.get(f"TUNIT{i}", "") == column_unit(name), name
        assert header.comments[f"TTYPE{i}"], name
    # What TOPCAT/STILTS users see: the description (and unit) of every column.
    shown = stilts_columns(files[which], "fits", hdu)
    assert list(shown) == names
    for name, (unit, description) in shown.items():
        assert description == column_description(name), name
        assert unit == column_unit(name), name


def test_write_table_keeps_the_extname_with_a_long_comment(tmp_path):
    """A long HDU description must not make cfitsio continue EXTNAME's value ('SOURCES&')."""
    import fitsio
    import numpy as np

    from slitcli.io.samplefile import write_table

    table = np.zeros(3, dtype=[("SOURCE_ID", "i8"), ("Z_TRUE", "f8")])
    path = tmp_path / "t.fits"
    with fitsio.FITS(str(path), "rw") as f:
        f.write(None)
        write_table(f, table, "SOURCES", "Sources of the field cut out along their traces in every exposure that covers them, truth included")
    with fitsio.FITS(str(path)) as f:
        assert "SOURCES" in f
        assert f["SOURCES"].read_header()["EXTNAME"] == "SOURCES"
