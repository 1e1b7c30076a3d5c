import numpy as np
import pytest
from astropy.table import Table
from typer.testing import CliRunner

from slitcli.cli import app
from slitcli.nn.augment import (
    AugmentConfig,
    apply,
    apply_dq,
    flip_y,
    paper_copies,
    random_params,
    shift,
    shift_subpixel_x,
)


@pytest.fixture
def cutouts():
    return np.random.default_rng(0).random((3, 2, 10, 40)).astype(np.float32)


def test_flip_and_integer_shifts(cutouts):
    np.testing.assert_array_equal(flip_y(flip_y(cutouts)), cutouts)
    moved = shift(cutouts, 5, -2)
    assert moved.sum() == pytest.approx(cutouts.sum(), rel=1e-6)
    np.testing.assert_array_equal(moved[..., 3, 10], cutouts[..., 5, 5])
    zeroed = shift(cutouts, 5, 0, wrap=False)
    assert np.all(zeroed[..., :5] == 0)
    np.testing.assert_array_equal(zeroed[..., 5:], cutouts[..., :-5])


def test_subpixel_shift_moves_the_centroid_and_keeps_flux():
    line = np.zeros((1, 1, 3, 40))
    line[..., 20] = 1.0
    moved = shift_subpixel_x(line, 0.3)
    cols = np.arange(40)
    assert (moved.sum(axis=(0, 1, 2)) * cols).sum() / moved.sum() == pytest.approx(20.3)
    assert moved.sum() == pytest.approx(line.sum())


def test_noise_redraw_matches_its_err(cutouts):
    err = np.full_like(cutouts, 0.5)
    params = random_params(3, AugmentConfig(p_flip=0, max_shift_x=0, max_shift_y=0, subpixel_x=0, noise_scale=2.0), np.random.default_rng(1))
    sci, new_err = apply(np.zeros_like(cutouts), err, params, np.random.default_rng(2))
    assert np.std(sci) == pytest.approx(1.0, rel=0.05)
    np.testing.assert_allclose(new_err, 0.5 * np.sqrt(5.0), rtol=1e-6)


def test_paper_copies_are_original_flip_then_shifts():
    p = paper_copies(AugmentConfig(), np.random.default_rng(3))
    assert len(p) == 8
    assert tuple(p[0]) == (0, 0, 0, 0.0, 0.0)
    assert p[1]["FLIP"] == 1 and p[1]["SHIFT_X"] == 0
    assert np.all(p["SHIFT_Y"][2:5] == 0) and np.all(p["SHIFT_X"][5:] == 0)
    assert np.all(np.abs(p["SHIFT_X"]) <= 48) and np.all(np.abs(p["SHIFT_Y"]) <= 4)


def test_dq_moves_with_the_data(cutouts):
    dq = np.zeros(cutouts.shape, np.int32)
    dq[0, 0, 2, 7] = 2
    params = random_params(3, AugmentConfig(p_flip=1.0, max_shift_x=0, max_shift_y=0, subpixel_x=0), np.random.default_rng(0))
    out = apply_dq(dq, params)
    assert out[0, 0, 7, 7] == 2 and out.sum() == 2


def test_augment_command_writes_copies_and_provenance(tmp_path):
    runner = CliRunner()
    sample = tmp_path / "s.fits"
    assert runner.invoke(app, ["simulate", "-n", "3", "-q", "-o", str(sample)]).exit_code == 0
    out = tmp_path / "a.fits"
    result = runner.invoke(app, ["augment", str(sample), "-o", str(out), "--copies", "4", "--seed", "2", "-q"])
    assert result.exit_code == 0, result.output
    aug = Table.read(out, hdu="AUGMENT")
    assert list(aug["SOURCE_ID"]) == [1] * 4 + [2] * 4 + [3] * 4
    assert list(aug["COPY"]) == [0, 1, 2, 3] * 3
    from astropy.io import fits

    with fits.open(sample) as a, fits.open(out) as b:
        assert b["GV_SCI"].data.shape == (12, 40, 480)
        np.testing.assert_array_equal(b["GV_SCI"].data[4], a["GV_SCI"].data[1])  # copy 0 is the original
        np.testing.assert_array_equal(b["GV_SCI"].data[5], a["GV_SCI"].data[1][::-1])  # copy 1 the flip
    again = runner.invoke(app, ["augment", str(sample), "-o", str(out), "-q"])
    assert again.exit_code == 1 and "--overwrite" in again.output
