"""Same inputs, same bytes: simulate, augment, catalogues and trained weights, with SOURCE_DATE_EPOCH."""

import json

import pytest
from astropy.io import fits
from conftest import TINY_SIM_YAML, assert_one_line_error, invoke, tiny_train_yaml
from safetensors import safe_open

from slitcli.nn.modelfile import run_independent

SIM = TINY_SIM_YAML
TRAIN = tiny_train_yaml()


@pytest.fixture
def epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    return "2023-11-14T22:13:20"


def test_simulate_and_augment_twice_give_the_same_bytes(tmp_path, epoch, monkeypatch):
    (tmp_path / "sim.yaml").write_text(SIM)
    paths = []
    for run in ("a", "b"):
        out = tmp_path / run / "sample.fits"
        out.parent.mkdir()
        assert invoke("simulate", "-n", 6, "--seed", 11, "--config", tmp_path / "sim.yaml", "-q", "-o", out).exit_code == 0
        assert invoke("augment", out, "--copies", 2, "--seed", 4, "-q", "-o", out.with_name("aug.fits")).exit_code == 0
        paths.append(out)
    a, b = paths
    assert a.read_bytes() == b.read_bytes()
    assert a.with_name("aug.fits").read_bytes() == b.with_name("aug.fits").read_bytes()
    assert fits.getheader(a)["DATE"] == epoch == fits.getheader(a.with_name("aug.fits"))["DATE"]
    # The epoch is what fixed DATE: another epoch changes DATE (and the checksums), nothing else.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    later = tmp_path / "later.fits"
    assert invoke("simulate", "-n", 6, "--seed", 11, "--config", tmp_path / "sim.yaml", "-q", "-o", later).exit_code == 0
    with fits.open(a) as x, fits.open(later) as y:
        assert y[0].header["DATE"] == "2027-01-15T08:00:00"
        for hx, hy in zip(x, y):
            assert hx.data is None and hy.data is None or hx.data.tobytes() == hy.data.tobytes()
            differ = {k for k in hx.header if k not in ("COMMENT", "") and hx.header[k] != hy.header[k]}
            assert differ <= {"DATE", "CHECKSUM"}, (hx.name, differ)


def test_malformed_epoch_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "2023-11-14")
    (tmp_path / "sim.yaml").write_text(SIM)
    out = tmp_path / "s.fits"
    assert_one_line_error(invoke("simulate", "-n", 2, "--config", tmp_path / "sim.yaml", "-q", "-o", out), "SOURCE_DATE_EPOCH", "'2023-11-14'")
    assert list(tmp_path.iterdir()) == [tmp_path / "sim.yaml"]


def test_catalogue_twice_gives_the_same_bytes(tmp_path, epoch):
    from test_catalog import redshift_table

    from slitcli.io.catalog import write_catalog

    for ext in ("fits", "ecsv"):
        a = write_catalog(redshift_table(), tmp_path / f"a.{ext}")
        b = write_catalog(redshift_table(), tmp_path / f"b.{ext}")
        assert a.read_bytes() == b.read_bytes(), ext
        assert epoch.encode() in a.read_bytes()


def test_train_twice_gives_the_same_weights_file(tmp_path):
    (tmp_path / "sim.yaml").write_text(SIM)
    (tmp_path / "train.yaml").write_text(TRAIN)
    for name, n, seed in (("train", 24, 1), ("val", 8, 2)):
        assert invoke("simulate", "-n", n, "--seed", seed, "--config", tmp_path / "sim.yaml", "-q", "-o", tmp_path / f"{name}.fits").exit_code == 0
    cards = []
    for run in ("a", "b"):
        # Same directory name: the card names the model after it.
        out = tmp_path / run / "model"
        result = invoke("train", tmp_path / "train.fits", "--val", tmp_path / "val.fits", "--config", tmp_path / "train.yaml", "-o", out, "-q")
        assert result.exit_code == 0, result.output
        cards.append(json.loads((out / "model.json").read_text()))
    a, b = (tmp_path / run / "model" / "model.safetensors" for run in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()
    # The run time stays in model.json only; the weights carry the rest of the card.
    assert cards[0]["training"]["wall_s"] > 0
    with safe_open(str(a), "pt") as f:
        embedded = json.loads(f.metadata()["slitcli"])
    assert "wall_s" not in json.dumps(embedded)
    assert embedded == run_independent(cards[0]) and embedded["training"]["history"] == cards[0]["training"]["history"]


def test_run_independent_drops_wall_times_at_any_depth():
    card = {"a": 1, "wall_s": 2.0, "training": {"wall_s": 3.0, "fit_wall_s": 1.0, "history": [{"epoch": 1, "wall_s": 0.5}], "n": 4}}
    assert run_independent(card) == {"a": 1, "training": {"history": [{"epoch": 1}], "n": 4}}
    assert card["training"]["wall_s"] == 3.0  # the card itself is untouched
