"""`cnnrepro describe`: the table, the JSON output and bad arguments."""

from __future__ import annotations

import json

import pytest

from cnnrepro import cli
from cnnrepro.models import FAMILIES, build, describe


def test_describe_json_lenet5_totals(capsys):
    assert cli.main(["describe", "lenet5", "--json", "--repeats", "2"]) == 0, "describe lenet5 failed"
    report = json.loads(capsys.readouterr().out)
    assert report["input_shape"] == [1, 1, 32, 32], f"input shape {report['input_shape']}"
    assert report["totals"]["params"] == 60_000, f"total parameters {report['totals']['params']}"
    assert report["totals"]["connections"] == 340_908, f"total connections {report['totals']['connections']}"
    layers = [row["layer"] for row in report["layers"]]
    assert layers == ["c1", "s2", "c3", "s4", "c5", "f6", "output"], f"layers {layers}"
    shares = sum(row["time_share"] for row in report["layers"])
    assert shares == pytest.approx(1.0), f"time shares sum to {shares}"
    assert all(row["time_ms"] > 0 for row in report["layers"]), "a layer has no measured time"


def test_describe_text_table(capsys):
    code = cli.main(["describe", "googlenet", "--image-size", "96", "--width", "0.25", "--repeats", "1"])
    assert code == 0, "describe googlenet failed"
    out = capsys.readouterr().out
    assert "inception5b" in out, "the table lacks the inception5b row"
    assert "aux1" not in out, "the table includes an auxiliary head, which does not run at inference"
    assert out.strip().splitlines()[-1].startswith("total"), "the table does not end with the totals row"


@pytest.mark.parametrize("family", FAMILIES)
def test_table_params_match_model(family):
    sizes = {"lenet5": {}, "alexnet": {"image_size": 67, "width": 0.125},
             "deepface": {"image_size": 76, "width": 0.25}, "googlenet": {"image_size": 96, "width": 0.25}}
    model = build(family, num_classes=5, **sizes[family], **({"aux_heads": False} if family == "googlenet" else {}))
    rows = describe.table(model, (1, model.input_channels, model.input_size, model.input_size))
    counted = describe.totals(rows)["params"]
    actual = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert counted == actual, f"{family}: table counts {counted:,} parameters, the model has {actual:,}"
    assert rows[-1]["output_shape"] == [5], f"{family}: last row's shape is {rows[-1]['output_shape']}"
    assert all(row["macs"] <= row["connections"] for row in rows), f"{family}: a row has more macs than links"


def test_describe_rejects_unknown_model(capsys):
    assert cli.main(["describe", "vgg16"]) == 2, "an unknown model must exit with status 2"
    assert "lenet5" in capsys.readouterr().err, "the error must list the known models"


def test_describe_rejects_bad_size(capsys):
    assert cli.main(["describe", "lenet5", "--image-size", "28"]) == 2, "an invalid size must exit with status 2"
    assert "image_size" in capsys.readouterr().err, "the error must name image_size"


def test_table_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        describe.table(build("lenet5", num_classes=10), (1, 1, 32, 32), repeats=0)


def test_table_restores_training_mode():
    model = build("lenet5", num_classes=10).train()
    describe.table(model, (1, 1, 32, 32))
    assert model.training, "describe.table left a training model in eval mode"
