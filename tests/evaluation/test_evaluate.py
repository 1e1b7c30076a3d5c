"""Joining predictions to the truth and the per-sample metrics table."""

import numpy as np
import pytest
from astropy.table import Table

from slitcli.evaluation.evaluate import (
    evaluate,
    join_truth,
    metrics_table,
    sample_masks,
)
from slitcli.evaluation.metrics import point_metrics


@pytest.fixture
def truth():
    return Table(
        {
            "SOURCE_ID": np.array([1, 2, 3, 4, 5, 6], dtype=np.int64),
            "Z_TRUE": np.array([0.2, 0.4, 0.6, 0.8, 1.0, 1.2]),
            "SNR_GI": np.array([0.5, 2.0, 4.0, 6.0, 12.0, 20.0], dtype=np.float32),
            "CLASS": np.array([b"RED", b"BLUE", b"RED", b"BLUE", b"RED", b""]),  # bytes, as from FITS
        }
    )


@pytest.fixture
def pred():
    t = Table(
        {
            "SOURCE_ID": np.array([5, 3, 99, 1, 2, 4, 6], dtype=np.int64),
            "Z": np.array([1.01, 0.62, 0.3, 0.19, 0.45, 0.8, 1.5]),
            "ZERR": np.array([0.02, 0.02, 0.1, 0.01, 0.03, 0.02, 0.05]),
            "ZWARN": np.array([0, 2, 0, 0, 0, 65536, 0], dtype=np.int32),
            "SNR_GI": np.full(7, 100.0),  # ignored: the truth has SNR_GI
        }
    )
    t.meta["MODEL"] = "m1"
    return t


def test_join_keeps_prediction_order_and_takes_truth_columns(pred, truth):
    j = join_truth(pred, truth)
    assert list(j["SOURCE_ID"]) == [5, 3, 1, 2, 4, 6]
    np.testing.assert_allclose(j["Z_TRUE"], [1.0, 0.6, 0.2, 0.4, 0.8, 1.2])
    np.testing.assert_allclose(j["SNR_GI"], [12.0, 4.0, 0.5, 2.0, 6.0, 20.0])
    assert list(j["ZWARN"]) == [0, 2, 0, 0, 65536, 0]
    assert (j.meta["N_PRED"], j.meta["N_TRUTH"], j.meta["N_MATCHED"], j.meta["MODEL"]) == (7, 6, 6, "m1")
    assert "N_PRED" not in pred.meta  # the input is not modified


def test_snr_from_predictions_when_truth_has_none(pred, truth):
    pred["SNR_GI"] = np.arange(7.0)
    j = join_truth(pred, truth["SOURCE_ID", "Z_TRUE"])
    assert list(j["SNR_GI"]) == [0.0, 1.0, 3.0, 4.0, 5.0, 6.0]
    assert "CLASS" not in j.colnames


def test_sample_masks(pred, truth):
    masks = sample_masks(join_truth(pred, truth), snr_cuts=(1, 10))
    # Joined order: ids 5, 3, 1, 2, 4, 6; the blank class of id 6 gets no sample.
    assert list(masks) == ["all", "SNR_GI>=1", "SNR_GI>=10", "CLASS=BLUE", "CLASS=RED"]
    assert list(masks["SNR_GI>=10"]) == [True, False, False, False, False, True]
    assert list(masks["CLASS=RED"]) == [True, True, True, False, False, False]


def test_metrics_table_rows(pred, truth):
    t = evaluate(pred, truth, snr_cuts=(1, 10, 50))
    assert list(t["sample"]) == ["all", "SNR_GI>=1", "SNR_GI>=10", "SNR_GI>=50", "CLASS=BLUE", "CLASS=RED"]
    assert list(t["n"]) == [6, 5, 2, 0, 2, 3]
    assert list(t["n_zwarn"]) == [2, 2, 0, 0, 1, 1]
    row = t[1]  # SNR_GI >= 1: ids 5, 3, 2, 4, 6
    expected = point_metrics([1.01, 0.62, 0.45, 0.8, 1.5], [0.02, 0.02, 0.03, 0.02, 0.05], [1.0, 0.6, 0.4, 0.8, 1.2])
    for key, value in expected.items():
        assert row[key] == pytest.approx(value), key
    assert np.isnan(t[3]["sigma_nmad"]) and np.isnan(t[3]["pit_ks"])
    assert t.meta["SNRCOL"] == "SNR_GI" and t.meta["MODEL"] == "m1"


def test_without_zwarn_counts_zero(pred, truth):
    del pred["ZWARN"]
    assert set(evaluate(pred, truth)["n_zwarn"]) == {0}


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p, t: p.remove_column("ZERR"), "predictions lack column(s) ZERR"),
        (lambda p, t: t.remove_column("Z_TRUE"), "truth lack column(s) Z_TRUE"),
        (lambda p, t: p["SOURCE_ID"].__setitem__(slice(None), np.arange(100, 107)), "no SOURCE_ID in common"),
        (lambda p, t: p["SOURCE_ID"].__setitem__(1, 5), "repeat SOURCE_ID 5"),
        (lambda p, t: p["Z"].__setitem__(0, np.nan), "column Z has NaN or infinite values (SOURCE_ID 5)"),
        (lambda p, t: p["ZERR"].__setitem__(1, -0.1), "column ZERR has negative values (SOURCE_ID 3)"),
    ],
)
def test_bad_tables_raise_value_error(pred, truth, change, message):
    change(pred, truth)
    with pytest.raises(ValueError) as err:
        evaluate(pred, truth)
    assert message in str(err.value)


def test_string_and_integer_ids_do_not_mix(pred, truth):
    pred["SOURCE_ID"] = pred["SOURCE_ID"].astype(str)
    with pytest.raises(ValueError, match="SOURCE_ID is"):
        join_truth(pred, truth)


def test_metrics_table_equals_evaluate(pred, truth):
    a = evaluate(pred, truth)
    b = metrics_table(join_truth(pred, truth))
    assert a.colnames == b.colnames
    for name in a.colnames:
        assert list(a[name].astype(str)) == list(b[name].astype(str))


def test_coverage_counts_truths_inside_the_published_quantiles(pred, truth):
    """With Z160-Z840 and Z025-Z975 columns, coverage is the fraction of truths between them, not within Z +- ZERR."""
    # Intervals that hold every truth although Z +- ZERR misses most of them.
    pred["Z160"], pred["Z840"] = np.full(7, 0.0), np.full(7, 2.0)
    pred["Z025"], pred["Z975"] = np.full(7, 0.0), np.full(7, 0.5)
    t = evaluate(pred, truth, snr_cuts=(1,))
    assert t[0]["coverage_68"] == 1.0
    # Z025-Z975 = [0, 0.5] holds the truths 0.2 and 0.4 of six.
    assert t[0]["coverage_95"] == pytest.approx(2 / 6)
    assert point_metrics(pred["Z"][[0, 1, 3, 4, 5, 6]], pred["ZERR"][[0, 1, 3, 4, 5, 6]], truth["Z_TRUE"][[4, 2, 0, 1, 3, 5]])["coverage_68"] < 1.0
