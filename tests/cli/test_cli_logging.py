"""Messages on stderr: --quiet, --verbose, progress lines in a log, one line per training epoch."""

from __future__ import annotations

import logging

import pytest
from conftest import TINY_SIM_YAML, invoke, tiny_train_yaml

from slitcli.cli import _common

SIM = TINY_SIM_YAML
TRAIN = tiny_train_yaml(pretrain_epochs=2)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("log")
    (d / "sim.yaml").write_text(SIM)
    (d / "train.yaml").write_text(TRAIN)
    for name, n, seed in (("train", 24, 1), ("val", 12, 2)):
        assert invoke("simulate", "-n", n, "--seed", seed, "--config", d / "sim.yaml", "-q", "-o", d / f"{name}.fits").exit_code == 0
    return d


def test_quiet_prints_nothing_and_default_prints_the_summary(samples, tmp_path):
    quiet = invoke("simulate", "-n", 3, "--config", samples / "sim.yaml", "-q", "-o", tmp_path / "a.fits")
    assert quiet.exit_code == 0 and quiet.output == ""
    loud = invoke("simulate", "-n", 3, "--config", samples / "sim.yaml", "-o", tmp_path / "b.fits")
    assert loud.exit_code == 0
    assert loud.output.strip().splitlines()[-1] == f"wrote 3 sources to {tmp_path / 'b.fits'} (bands GV, GI)"


def test_verbose_adds_debug_lines(samples, tmp_path):
    # The shipped model needs 40 x 480 cutouts: use the template route, which fits any size.
    normal = invoke("predict", samples / "val.fits", "--method", "template", "-o", tmp_path / "z1.ecsv")
    verbose = invoke("evaluate", tmp_path / "z1.ecsv", "--truth", samples / "val.fits", "-o", tmp_path / "rep", "-v")
    assert normal.exit_code == 0, normal.output
    assert verbose.exit_code == 0, verbose.output
    quiet = invoke("evaluate", tmp_path / "z1.ecsv", "--truth", samples / "val.fits", "-o", tmp_path / "rep2", "-q")
    assert quiet.exit_code == 0 and quiet.output == "", quiet.output
    assert "wrote metrics.ecsv" in verbose.output
    # --verbose adds debugging lines (the version and the command) that the default leaves out.
    assert any(line.startswith("slitcli: debug: slitcli ") for line in verbose.output.splitlines()), verbose.output
    assert "slitcli: debug:" not in normal.output


def test_train_logs_one_line_per_epoch(samples, tmp_path):
    result = invoke("train", samples / "train.fits", "--val", samples / "val.fits", "--config", samples / "train.yaml", "-o", tmp_path / "m")
    assert result.exit_code == 0, result.output
    epochs = [line for line in result.output.splitlines() if " epoch " in line]
    assert [e.split(":")[0] for e in epochs] == ["pretrain epoch 1/2", "pretrain epoch 2/2", "finetune epoch 1/1"]
    for line in epochs:
        assert "loss " in line and "validation sigma_NMAD " in line


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def caplines(monkeypatch):
    """The slitcli logger's records, and nothing else listening."""
    handler = _Records()
    monkeypatch.setattr(_common.log, "handlers", [handler])
    monkeypatch.setattr(_common.log, "propagate", False)
    monkeypatch.setattr(_common.log, "level", logging.INFO)
    return handler


def test_line_progress_every_tenth(monkeypatch, caplines):
    clock = iter(range(0, 10_000, 2))  # every call to the clock advances 2 s
    monkeypatch.setattr(_common.time, "monotonic", lambda: next(clock))
    bar = _common._LineProgress()
    task = bar.add_task("simulating", total=1000)
    for done in range(0, 1001, 25):
        bar.update(task, completed=done)
    lines = [r.getMessage() for r in caplines.records]
    # One line at each 10% crossed (the clock moves 2 s per update, so none is rate-limited).
    assert len(lines) == 10
    assert lines[0].startswith("simulating: 100/1000 (10%)")
    assert lines[-1].startswith("simulating: 1000/1000 (100%)")


def test_line_progress_is_rate_limited_and_speaks_after_30_s(monkeypatch, caplines):
    now = [0.0]
    monkeypatch.setattr(_common.time, "monotonic", lambda: now[0])
    bar = _common._LineProgress()
    task = bar.add_task("reading", total=1000)
    for done in range(0, 1001, 100):  # all of it within the first second: nothing printed
        now[0] += 0.05
        bar.update(task, completed=done)
    assert caplines.records == []
    slow = bar.add_task("training", total=10_000)
    for done in range(1, 40):  # 0.1% per step, 1 s apart: a line only after 30 s
        now[0] += 1.0
        bar.update(slow, completed=done)
    assert len(caplines.records) == 1 and caplines.records[0].getMessage().startswith("training: 30/10000")
