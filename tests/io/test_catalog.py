"""Catalogues as the ecosystem reads them: FITS cards, checksums, fitsverify, STILTS, astropy."""

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from ecosystem_tools import fitsverify, stilts_columns

from slitcli import __version__
from slitcli.evaluation.evaluate import metrics_table
from slitcli.evaluation.metrics import METRIC_KEYS
from slitcli.evaluation.report import write_report
from slitcli.io.catalog import read_catalog, write_catalog
from slitcli.io.columns import column_description, column_unit

EPOCH, EPOCH_DATE = "1700000000", "2023-11-14T22:13:20"
COLUMNS = ("SOURCE_ID", "INPUT_FILE", "RA", "DEC", "Z", "ZERR", "ZERR_EPI", "ZERR_ALE", "Z025", "Z160", "Z500", "Z840", "Z975", "SNR_GI", "ZWARN")


def redshift_table(n=20, seed=0) -> Table:
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.1, 1.5, n)
    zerr = rng.uniform(0.01, 0.1, n)
    t = Table()
    t["SOURCE_ID"] = np.arange(1, n + 1, dtype=np.int64)
    t["INPUT_FILE"] = ["a.fits"] * (n // 2) + ["b.fits"] * (n - n // 2)
    t["RA"], t["DEC"] = rng.uniform(150, 151, n), rng.uniform(2, 3, n)
    t["Z"], t["ZERR"], t["ZERR_EPI"], t["ZERR_ALE"] = z, zerr, zerr / 2, zerr * np.sqrt(0.75)
    for name, k in (("Z025", -2), ("Z160", -1), ("Z500", 0), ("Z840", 1), ("Z975", 2)):
        t[name] = np.maximum(0.0, z + k * zerr)
    t["SNR_GI"] = rng.uniform(0.5, 20, n).astype(np.float32)
    t["ZWARN"] = np.where(t["SNR_GI"] < 1, 2048, 0)
    # Provenance as `slitcli predict` writes it, with a value too long for one card.
    t.meta.update({"METHOD": "cnn", "MODEL": "slitnet-csst-default", "MODELSHA": "0f" * 32, "N_MC": 100, "SEED": 0, "TEMPERAT": 1.3, "SNRPOWER": 0.0, "DEVICE": "cpu", "ZDOF": 4.0, "INPUTS": ",".join(f"field_{i:03d}.fits" for i in range(8))})
    return t


@pytest.fixture
def fits_catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    return write_catalog(redshift_table(), tmp_path / "z.fits")


def test_fits_catalogue_header(fits_catalog):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(fits_catalog, checksum=True) as hdus:
            assert [h.name for h in hdus] == ["PRIMARY", "REDSHIFTS"]
            for hdu in hdus:
                assert hdu.verify_checksum() == 1 and hdu.verify_datasum() == 1, hdu.name
                assert (hdu.header["SWVERS"], hdu.header["DATE"], hdu.header["ORIGIN"]) == (__version__, EPOCH_DATE, "slitcli")
                for card in hdu.header.cards:
                    if card.keyword not in ("COMMENT", "HISTORY", ""):
                        assert card.comment.strip(), f"{hdu.name}: {card.keyword} has no comment"
            header = hdus["REDSHIFTS"].header
            assert header.comments["MODELSHA"] == "SHA-256 of the weights (model.safetensors)"
    for i, name in enumerate(COLUMNS, start=1):
        assert header[f"TTYPE{i}"] == name
        assert header[f"TCOMM{i}"] == column_description(name), name
        assert header.get(f"TUNIT{i}", "") == column_unit(name), name
    assert header["TUNIT3"] == "deg"


def test_fits_catalogue_passes_fitsverify_and_stilts_shows_descriptions(fits_catalog):
    n_warnings, n_errors, report = fitsverify(fits_catalog)
    assert (n_warnings, n_errors) == (0, 0), report
    shown = stilts_columns(fits_catalog, "fits", "REDSHIFTS")
    assert list(shown) == list(COLUMNS)
    for name, (unit, description) in shown.items():
        assert description == column_description(name), name
        assert unit == column_unit(name), name


def test_fits_catalogue_round_trip(fits_catalog):
    table = read_catalog(fits_catalog, ("SOURCE_ID", "Z"))
    assert table["Z"].description == column_description("Z") and str(table["RA"].unit) == "deg"
    assert table.meta["ZDOF"] == 4.0 and table.meta["INPUTS"] == redshift_table().meta["INPUTS"]
    assert not {"CHECKSUM", "DATASUM", "TCOMM1", "EXTNAME", "LONGSTRN"} & set(table.meta)
    np.testing.assert_array_equal(table["Z"], redshift_table()["Z"])
    # Plain astropy shows them too, from its serialized-column cards.
    plain = Table.read(fits_catalog, hdu="REDSHIFTS")
    assert all(plain[name].description == column_description(name) for name in COLUMNS)


def test_ecsv_catalogue_meta_and_descriptions(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    path = write_catalog(redshift_table(), tmp_path / "z.ecsv")
    table = Table.read(path)
    assert (table.meta["SWVERS"], table.meta["DATE"]) == (__version__, EPOCH_DATE)
    for name in COLUMNS:
        assert table[name].description == column_description(name)
    shown = stilts_columns(path, "ecsv")
    assert all(shown[name] == (column_unit(name), column_description(name)) for name in COLUMNS)


def test_metrics_ecsv_describes_every_column(tmp_path):
    rng = np.random.default_rng(1)
    joined = redshift_table(60, seed=2)
    joined["Z_TRUE"] = np.clip(joined["Z"] + 0.03 * rng.standard_normal(60), 0.01, None)
    joined["CLASS"] = rng.choice(["RED", "BLUE"], 60)
    metrics = metrics_table(joined)
    assert set(metrics.colnames) == {"sample", *METRIC_KEYS, "n_zwarn"}
    write_report(tmp_path / "report", joined, metrics)
    path = tmp_path / "report" / "metrics.ecsv"
    table = Table.read(path)
    assert table.colnames == metrics.colnames
    for name in table.colnames:
        assert table[name].description and table[name].description == column_description(name), name
    assert table.meta["SWVERS"] == __version__ and "DATE" in table.meta
    shown = stilts_columns(path, "ecsv")
    assert list(shown) == table.colnames
    assert all(description for _, description in shown.values()), shown
