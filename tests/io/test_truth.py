"""Reading true redshifts: masked, NaN or infinite values refused; FITS tables picked by name, without warnings."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from slitcli.errors import InputError
from slitcli.io.catalog import read_catalog
from slitcli.io.truth import read_truth


def truth_table(n=6):
    return Table({"SOURCE_ID": np.arange(1, n + 1), "Z_TRUE": np.linspace(0.2, 1.2, n), "SNR_GI": np.linspace(0.5, 8.0, n)})


def write_fits(path, *tables):
    """PRIMARY + one binary table HDU per (name, table)."""
    hdus = [fits.PrimaryHDU()]
    for name, table in tables:
        hdu = fits.table_to_hdu(table)
        hdu.name = name
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path)
    return path


def test_nan_z_true_in_a_sample_file_is_refused_with_file_hdu_column_and_count(tmp_path):
    truth = truth_table()
    truth["Z_TRUE"][[1, 3]] = np.nan  # astropy reads these back as masked
    path = write_fits(tmp_path / "sample.fits", ("GV_SENS", Table({"WAVELENGTH": [1.0]})), ("SOURCES", truth))
    assert isinstance(Table.read(path, hdu="SOURCES")["Z_TRUE"], MaskedColumn)
    with pytest.raises(InputError) as err:
        read_truth(path)
    assert str(err.value) == (
        f"{path}: HDU SOURCES: column Z_TRUE has NaN, infinite or masked values in 2 of 6 rows (SOURCE_ID 2, 4); remove or fill those rows"
    )


def test_masked_z_true_in_an_ecsv_truth_is_refused(tmp_path):
    truth = truth_table(5)
    truth["Z_TRUE"] = MaskedColumn(truth["Z_TRUE"], mask=[False, False, True, False, False])
    truth.write(tmp_path / "t.ecsv")
    assert Table.read(tmp_path / "t.ecsv")["Z_TRUE"].mask.sum() == 1  # masked, not NaN, on reading
    with pytest.raises(InputError, match=r"t\.ecsv: column Z_TRUE has NaN, infinite or masked values in 1 of 5 rows \(SOURCE_ID 3\)"):
        read_truth(tmp_path / "t.ecsv")


def test_infinite_z_true_and_masked_snr_are_refused(tmp_path):
    truth = truth_table(4)
    truth["Z_TRUE"][0] = np.inf
    truth.write(tmp_path / "inf.ecsv")
    with pytest.raises(InputError, match=r"column Z_TRUE .* in 1 of 4 rows \(SOURCE_ID 1\)"):
        read_truth(tmp_path / "inf.ecsv")
    truth = truth_table(4)
    truth["SNR_GI"] = MaskedColumn(truth["SNR_GI"], mask=[True, True, True, False])
    truth.write(tmp_path / "snr.ecsv")
    with pytest.raises(InputError, match=r"snr\.ecsv: column SNR_GI has NaN, infinite or masked values in 3 of 4 rows \(SOURCE_ID 1, 2, 3\)"):
        read_truth(tmp_path / "snr.ecsv")
    # Without the SNR column, nothing to check there.
    truth.remove_column("SNR_GI")
    truth.write(tmp_path / "nosnr.ecsv")
    assert len(read_truth(tmp_path / "nosnr.ecsv")) == 4


def test_masked_source_id_is_named_by_row_index(tmp_path):
    truth = truth_table(4)
    truth["SOURCE_ID"] = MaskedColumn(truth["SOURCE_ID"], mask=[False, True, False, False])
    truth.write(tmp_path / "ids.ecsv")
    with pytest.raises(InputError, match=r"column SOURCE_ID has NaN, infinite or masked values in 1 of 4 rows \(row index 1\)"):
        read_truth(tmp_path / "ids.ecsv")


def test_a_clean_truth_reads_unchanged(tmp_path):
    truth = truth_table()
    path = write_fits(tmp_path / "sample.fits", ("SOURCES", truth))
    read = read_truth(path)
    np.testing.assert_array_equal(read["Z_TRUE"], truth["Z_TRUE"])
    np.testing.assert_array_equal(read["SOURCE_ID"], truth["SOURCE_ID"])


def test_fits_catalogue_with_two_tables_reads_without_warning(tmp_path):
    # pytest turns warnings into errors: astropy's "hdu= was not specified" would fail this test.
    truth = truth_table()
    path = write_fits(tmp_path / "truth.fits", ("META", Table({"KEY": ["a", "b"]})), ("TRUTH", truth))
    read = read_truth(path)  # the first table that has SOURCE_ID and Z_TRUE
    np.testing.assert_array_equal(read["Z_TRUE"], truth["Z_TRUE"])
    # REDSHIFTS, when present, is the catalogue (as DESI's), wherever it sits.
    pred = Table({"SOURCE_ID": [1, 2], "Z": [0.1, 0.2], "ZERR": [0.01, 0.02]})
    decoy = Table({"SOURCE_ID": [7], "Z": [9.0], "ZERR": [1.0]})
    path = write_fits(tmp_path / "z.fits", ("FIBERMAP", decoy), ("REDSHIFTS", pred))
    np.testing.assert_array_equal(read_catalog(path, ("SOURCE_ID", "Z", "ZERR"))["Z"], [0.1, 0.2])


def test_errors_of_a_fits_catalogue_name_the_hdu(tmp_path):
    path = write_fits(tmp_path / "two.fits", ("FIRST", Table({"A": [1]})), ("SECOND", Table({"B": [2]})))
    with pytest.raises(InputError, match=r"two\.fits: HDU FIRST: missing column\(s\) SOURCE_ID, Z_TRUE"):
        read_truth(path)
    pred = Table({"SOURCE_ID": [1, 2, 3], "Z": [0.1, np.nan, 0.3], "ZERR": [0.01, 0.02, 0.03]})
    path = write_fits(tmp_path / "z.fits", ("REDSHIFTS", pred))
    with pytest.raises(InputError, match=r"z\.fits: HDU REDSHIFTS: column Z has NaN, infinite or masked values in 1 of 3 rows \(SOURCE_ID 2\)"):
        read_catalog(path, ("SOURCE_ID", "Z", "ZERR"))
    fits.HDUList([fits.PrimaryHDU(np.zeros((2, 2)))]).writeto(tmp_path / "image.fits")
    with pytest.raises(InputError, match=r"image\.fits: no table HDU"):
        read_truth(tmp_path / "image.fits")
