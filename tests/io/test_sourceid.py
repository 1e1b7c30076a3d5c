"""SOURCE_ID unique across files: simulate --first-id, predict refusing collisions, INPUT_FILE per row."""

import fitsio
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import assert_one_line_error, assert_usage_error, invoke

from slitcli.errors import InputError
from slitcli.io.sourceid import (
    check_unique_source_ids,
    input_names,
    read_source_ids,
    stack_inputs,
)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """a and b both hold IDs 1-3 (the default --first-id); c holds 4-6. Default cutouts, for the shipped model."""
    d = tmp_path_factory.mktemp("sourceid")
    for name, seed, extra in (("a", 1, ()), ("b", 2, ()), ("c", 2, ("--first-id", 4))):
        result = invoke("simulate", "-n", 3, "--seed", seed, *extra, "-q", "-o", d / f"{name}.fits")
        assert result.exit_code == 0, result.output
    return {name: d / f"{name}.fits" for name in "abc"}


def test_first_id_numbers_the_sources(samples):
    np.testing.assert_array_equal(read_source_ids(samples["a"]), [1, 2, 3])
    np.testing.assert_array_equal(read_source_ids(samples["c"]), [4, 5, 6])
    assert fits.getheader(samples["c"])["FIRSTID"] == 4
    # Only the IDs move: the same seed draws the same sources.
    with fits.open(samples["b"]) as b, fits.open(samples["c"]) as c:
        np.testing.assert_array_equal(b["SOURCES"].data["Z_TRUE"], c["SOURCES"].data["Z_TRUE"])
        assert b["GI_SCI"].data.tobytes() == c["GI_SCI"].data.tobytes()


def test_first_id_with_file_inputs_is_a_usage_error(tmp_path):
    result = invoke("simulate", "--hsc", tmp_path / "h.fits", "--desi", tmp_path / "d.fits", "--first-id", 10, "-o", tmp_path / "s.fits")
    assert_usage_error(result, "--first-id", "object_id")


def test_collisions_are_found_across_files(samples):
    with pytest.raises(InputError) as err:
        check_unique_source_ids([samples["c"], samples["a"], samples["b"]])
    message = str(err.value)
    assert f"{samples['a']} and {samples['b']} both hold SOURCE_ID 1 (3 ID(s)" in message and "\n" not in message
    check_unique_source_ids([samples["a"], samples["c"]])
    with pytest.raises(InputError, match="a.fits is given twice"):
        check_unique_source_ids([samples["a"], samples["c"], samples["a"]])
    check_unique_source_ids([samples["a"]])


def test_file_without_sources_table_counts_its_cube(tmp_path):
    from astropy.io import fits
    from conftest import TINY_SIM_YAML

    (tmp_path / "sim.yaml").write_text(TINY_SIM_YAML)
    full, bare = tmp_path / "full.fits", tmp_path / "bare.fits"
    assert invoke("simulate", "-n", 4, "--config", tmp_path / "sim.yaml", "-q", "-o", full).exit_code == 0
    with fits.open(full) as hdul:
        fits.HDUList([h for h in hdul if h.name != "SOURCES"]).writeto(bare)
    np.testing.assert_array_equal(read_source_ids(bare), [0, 1, 2, 3])
    with pytest.raises(InputError, match="no BANDS keyword"):
        with fitsio.FITS(str(tmp_path / "cube.fits"), "rw", clobber=True) as f:
            f.write(np.zeros((4, 2, 8), "f4"), extname="GI_SCI")
        read_source_ids(tmp_path / "cube.fits")


def test_input_names_and_stacking(tmp_path):
    assert input_names([tmp_path / "x" / "s.fits", tmp_path / "t.fits"]) == ["s.fits", "t.fits"]
    same = [tmp_path / "x" / "s.fits", tmp_path / "y" / "s.fits"]
    assert input_names(same) == [str(p) for p in same]
    stacked = stack_inputs([Table({"SOURCE_ID": [1, 2], "Z": [0.1, 0.2]}), Table({"SOURCE_ID": [1], "Z": [0.3]})], ["p.fits", "q.fits"])
    assert stacked.colnames == ["SOURCE_ID", "INPUT_FILE", "Z"]
    assert list(stacked["INPUT_FILE"]) == ["p.fits", "p.fits", "q.fits"]


def test_predict_refuses_colliding_inputs(samples, tmp_path):
    out = tmp_path / "z.ecsv"
    result = invoke("predict", samples["a"], samples["b"], "--n-mc", 2, "-o", out)
    assert_one_line_error(result, str(samples["a"]), str(samples["b"]), "SOURCE_ID 1", "--allow-duplicate-ids")
    assert not out.exists()


def test_predict_records_the_input_of_each_row(samples, tmp_path):
    result = invoke("predict", samples["a"], samples["c"], "--n-mc", 2, "-q", "-o", tmp_path / "z.fits")
    assert result.exit_code == 0, result.output
    z = Table.read(tmp_path / "z.fits", hdu="REDSHIFTS")
    assert list(z["SOURCE_ID"]) == [1, 2, 3, 4, 5, 6]
    assert list(z["INPUT_FILE"]) == ["a.fits"] * 3 + ["c.fits"] * 3
    assert z.meta["INPUTS"] == "a.fits,c.fits"
    result = invoke("predict", samples["a"], samples["b"], "--n-mc", 2, "--allow-duplicate-ids", "-q", "-o", tmp_path / "dup.ecsv")
    assert result.exit_code == 0, result.output
    dup = Table.read(tmp_path / "dup.ecsv")
    keys = list(zip(dup["INPUT_FILE"], dup["SOURCE_ID"]))
    assert len(set(keys)) == len(keys) == 6 and len(set(dup["SOURCE_ID"])) == 3
    assert dup["INPUT_FILE"].description.startswith("Name of the input sample file")
