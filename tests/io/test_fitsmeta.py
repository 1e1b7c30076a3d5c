"""FITS checksums written in place, and DATE from SOURCE_DATE_EPOCH."""

import warnings

import fitsio
import numpy as np
import pytest
from astropy.io import fits
from ecosystem_tools import fitsverify

from slitcli.errors import ConfigError
from slitcli.io.fitsmeta import (
    CHECKSUM_COMMENT,
    add_checksum_cards,
    file_date,
    write_checksums,
)


def _three_hdus(path):
    rng = np.random.default_rng(0)
    table = np.zeros(7, dtype=[("A", "i8"), ("S", "S5"), ("X", "f4")])
    table["A"] = rng.integers(-(2**40), 2**40, 7)
    table["X"] = rng.standard_normal(7)
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        f.write(None, header=[{"name": "FOO", "value": 1, "comment": "a card"}])
        add_checksum_cards(f[0])
        # An odd number of float32 pixels, so the data unit needs padding.
        f.write(rng.standard_normal((3, 5, 7)).astype("f4"), extname="IMG")
        add_checksum_cards(f["IMG"])
        f.write(table, extname="TAB")
        add_checksum_cards(f["TAB"])
    write_checksums(path)


def test_checksums_agree_with_astropy_and_fitsverify(tmp_path):
    path = tmp_path / "c.fits"
    _three_hdus(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(path, checksum=True) as hdus:
            for hdu in hdus:
                assert hdu.verify_checksum() == 1 and hdu.verify_datasum() == 1, hdu.name
                assert hdu.header.comments["CHECKSUM"] == CHECKSUM_COMMENT
                written = int(hdu.header["DATASUM"])
                # astropy's own sum of the data unit (independent code) gives the same number.
                assert hdu.add_datasum(when="x") == written, hdu.name
            assert int(hdus["IMG"].header["DATASUM"]) != 0
    assert fitsverify(path)[:2] == (0, 0)


def test_a_changed_byte_is_caught(tmp_path):
    path = tmp_path / "c.fits"
    _three_hdus(path)
    raw = bytearray(path.read_bytes())
    with fits.open(path) as hdus:
        offset = hdus["TAB"].fileinfo()["datLoc"]
    raw[offset + 3] ^= 0x10
    path.write_bytes(bytes(raw))
    warnings_, errors, report = fitsverify(path)
    assert warnings_ >= 1 and "checksum" in report.lower()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fits.open(path, checksum=True).close()
    messages = {str(w.message).strip() for w in caught}
    assert messages == {"Checksum verification failed for HDU ('TAB', 1).", "Datasum verification failed for HDU ('TAB', 1)."}


def test_write_checksums_needs_the_cards(tmp_path):
    path = tmp_path / "bare.fits"
    fitsio.write(str(path), np.zeros((2, 2), "f4"))
    with pytest.raises(ValueError, match="HDU 0 has no CHECKSUM card"):
        write_checksums(path)


def test_date_honours_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert file_date() == "2023-11-14T22:13:20"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH"):
        file_date()
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert file_date().startswith("20") and len(file_date()) == 19
