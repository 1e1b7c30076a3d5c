"""Judging redshifts against the truth.

`metrics` (pure NumPy: sigma_NMAD, outliers, bias, coverage, calibration error, PIT; the
training loop and calibration score with it too), `evaluate` (metrics per SNR cut and
class), `plots` (PNG figures) and `report` (the report directory `slitcli evaluate` writes).
"""
