"""Option values out of range are usage errors: exit 2, the usage line, the option named, nothing written."""

from __future__ import annotations

import pytest
from conftest import assert_usage_error, invoke


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["train", "t.fits", "--val", "v.fits", "-o", "m", "--batch-size", "0"], "--batch-size"),
        (["train", "t.fits", "--val", "v.fits", "-o", "m", "--batch-size", "1"], "--batch-size"),
        (["train", "t.fits", "--val", "v.fits", "-o", "m", "--pretrain-epochs", "0", "--finetune-epochs", "0"], "--pretrain-epochs"),
        (["train", "t.fits", "--val", "v.fits", "-o", "m", "--finetune-epochs", "-1"], "--finetune-epochs"),
        (["predict", "s.fits", "-o", "z.ecsv", "--batch-size", "0"], "--batch-size"),
        (["predict", "s.fits", "-o", "z.ecsv", "--n-mc", "1"], "--n-mc"),
        (["calibrate", "s.fits", "-o", "m", "--n-mc", "0"], "--n-mc"),
        (["augment", "s.fits", "-o", "a.fits", "--copies", "0"], "--copies"),
        (["augment", "s.fits", "-o", "a.fits", "--max-shift-x", "-1"], "--max-shift-x"),
        (["simulate", "-o", "s.fits", "-n", "0"], "--n-sources"),
        (["simulate", "-o", "s.fits", "--workers", "0"], "--workers"),
        (["evaluate", "z.ecsv", "--truth", "s.fits", "-o", "r", "--snr-cuts", "a,b"], "--snr-cuts"),
    ],
)
def test_out_of_range_option_is_a_usage_error(tmp_path, monkeypatch, args, option):
    monkeypatch.chdir(tmp_path)
    assert_usage_error(invoke(*args), option)
    assert list(tmp_path.iterdir()) == []
