"""Claims: the registry, the 1-D weight-sharing counts, the statistics and the summarisers on recorded shapes."""

from __future__ import annotations

import pytest

from cnnrepro.claims import direct, registry, stats, sweep
from cnnrepro.claims.registry import Claim, Variant
from cnnrepro.claims.sweep import Point


def _history(errors, val=None):
    """A plots/train/<key>.csv as sweep.read_file returns it: one dict of floats per epoch."""
    val = val or errors
    return [{"epoch": float(i + 1), "train_error": e, "val_error": v, "train_loss": 1.0}
            for i, (e, v) in enumerate(zip(errors, val))]


def test_catalog_lists_every_claim():
    names = [claim.name for claim in registry.all_claims()]
    expected = ["weight-sharing", "conv-speed", "activation", "activation-lenet5", "dropout", "lrn-pooling",
                "deepface-scale", "aux-heads", "crops-models"]
    assert names == expected, f"registered claims {names}, expected {expected}"


def test_shared_experiment_names_mean_same_params():
    seen: dict[str, dict] = {}
    for claim in registry.all_claims():
        for variant in claim.variants:
            for seed in claim.seeds:
                name = claim.experiment_name(variant, seed)
                overrides = {**claim.point_overrides(variant, seed), "targets": claim.targets}
                assert seen.setdefault(name, overrides) == overrides, (
                    f"experiment {name} is shared by two variants with different params: {seen[name]} vs {overrides}"
                )


def test_every_sweep_variant_sets_the_same_keys():
    for claim in registry.all_claims():
        keys = [set(claim.point_overrides(v, 0)) for v in claim.variants]
        assert all(k == keys[0] for k in keys), f"claim {claim.name}: variants override different keys {keys}"


def test_queue_command_line():
    claim = registry.get("lrn-pooling")
    command = sweep.queue_command(claim, claim.variants[1], 1)
    assert command[:7] == ["dvc", "exp", "run", "--queue", "-f", "-n", "alexnet-nolrn-s1"], f"prefix {command[:7]}"
    assert "train.alexnet.lrn=false" in command, f"LRN override missing from {command}"
    assert "train.alexnet.seed=1" in command, f"seed override missing from {command}"
    assert command[-1] == "evaluate@alexnet", f"target stage missing at the end of {command}"


@pytest.mark.parametrize("value, text", [(True, "true"), (False, "false"), (0.5, "0.5"), ([30, 36], "[30,36]"),
                                         ("tanh", "tanh")])
def test_format_value(value, text):
    assert sweep.format_value(value) == text, f"{value!r} formats as {sweep.format_value(value)!r}"


def test_points_order_seed_first():
    claim = registry.get("dropout")
    order = [(p.seed, p.variant.name) for p in sweep.points(claim)]
    assert order == [(0, "no-dropout"), (0, "dropout"), (1, "no-dropout"), (1, "dropout")], f"order {order}"


def test_unknown_claim_lists_known():
    with pytest.raises(KeyError, match="weight-sharing"):
        registry.get("no-such-claim")


def test_one_d_example_counts():
    counts = {name: direct.count_layer(layer, 5) for name, layer in direct.one_d_layers(5, 3).items()}
    weights = [counts[k]["weights"] for k in ("fully connected", "locally connected", "convolution")]
    assert weights == [25, 13, 3], f"weights touching real inputs {weights}, the chapter's example has 25 / 13 / 3"
    connections = [counts[k]["connections"] for k in ("fully connected", "locally connected", "convolution")]
    assert connections == [25, 13, 13], f"connections {connections}"
    assert counts["locally connected"]["parameters"] == 15, "5 positions x 3 taps are stored, 2 only meet padding"


def test_matched_mlp_parameter_count():
    mlp = direct.matched_mlp(60_000)
    count = sum(p.numel() for p in mlp.parameters())
    step = 1024 + 1 + 10  # parameters one more hidden unit adds
    assert abs(count - 60_000) <= step / 2, f"MLP has {count} parameters, more than half a unit from 60,000"


def test_epochs_to_target_interpolates():
    history = _history([0.9, 0.6, 0.3])
    assert stats.epochs_to_target(history, "train_error", 0.45) == pytest.approx(2.5), "halfway between 2 and 3"
    assert stats.epochs_to_target(history, "train_error", 0.95) == 1.0, "reached at the first epoch"
    assert stats.epochs_to_target(history, "train_error", 0.1) is None, "never reached"


def test_spread_skips_missing_seeds():
    summary = stats.spread({0: 1.0, 1: 3.0, 2: None})
    assert summary["mean"] == 2.0, f"mean {summary['mean']}"
    assert summary["std"] == pytest.approx(2 ** 0.5), f"std {summary['std']}"
    assert summary["n"] == 2, f"n {summary['n']}"
    assert stats.spread({0: 1.0})["std"] is None, "one seed has no spread"


def _points(claim, files_by_variant):
    out = []
    for point in sweep.points(claim):
        files = files_by_variant.get(point.variant.name, {}).get(point.seed)
        if files is not None:
            point.rev, point.files = "0" * 40, files
        out.append(point)
    return out


def test_activation_summary_ratio():
    claim = registry.get("activation")
    fast = {"plots/train/alexnet.csv": _history([0.9, 0.65, 0.5, 0.4])}
    slow = {"plots/train/alexnet.csv": _history([0.9, 0.85, 0.8, 0.75, 0.72, 0.7, 0.6])}
    result = claim.summarise(claim, _points(claim, {"relu": {0: fast, 1: fast}, "tanh": {0: slow, 1: slow}}))
    assert result["ratio"] == pytest.approx(6.0 / 1.8), f"ratio {result['ratio']}"
    assert result["verdict"] == stats.HELD, f"verdict {result['verdict']} for a 3.3x ratio"


def test_activation_summary_lower_bound_when_never_reached():
    claim = registry.get("activation")
    fast = {"plots/train/alexnet.csv": _history([0.9, 0.6])}
    slow = {"plots/train/alexnet.csv": _history([0.9, 0.8])}
    result = claim.summarise(claim, _points(claim, {"relu": {0: fast}, "tanh": {0: slow}}))
    assert "at least" in result["findings"][0], f"finding should state a lower bound: {result['findings']}"


def test_summary_without_experiments_is_not_measured():
    for name in ("activation", "dropout", "lrn-pooling", "deepface-scale", "aux-heads", "crops-models"):
        claim = registry.get(name)
        result = claim.summarise(claim, sweep.points(claim))
        assert result["verdict"] == stats.NOT_MEASURED, f"{name}: verdict {result['verdict']} with no experiments"
        assert result["table"]["rows"], f"{name}: the table should list the variants as not run"


def test_dropout_summary():
    claim = registry.get("dropout")
    overfit = {"plots/train/alexnet.csv": _history([0.8, 0.55, 0.3], [0.8, 0.6, 0.6]),
               "metrics/train/alexnet.json": {"best_epoch": 2}, "metrics/evaluate/alexnet.json": {"top1_error_1crop": 0.5}}
    regular = {"plots/train/alexnet.csv": _history([0.85, 0.75, 0.65, 0.55], [0.8, 0.7, 0.6, 0.55]),
               "metrics/train/alexnet.json": {"best_epoch": 4}, "metrics/evaluate/alexnet.json": {"top1_error_1crop": 0.45}}
    result = claim.summarise(claim, _points(claim, {"no-dropout": {0: overfit}, "dropout": {0: regular}}))
    assert result["values"]["no-dropout"]["gap"]["mean"] == pytest.approx(0.3), "gap is val - train at the end"
    assert result["verdict"] == stats.HELD, f"verdict {result['verdict']}: {result['findings']}"


def test_ablation_summary_within_noise_is_partly():
    claim = registry.get("lrn-pooling")
    path = "metrics/evaluate/alexnet.json"

    def files(top1):
        return {path: {"top1_error_1crop": top1, "top5_error_1crop": 0.1, "top1_error_10crop": top1,
                       "top5_error_10crop": 0.1}}

    measured = {"base": {0: files(0.40), 1: files(0.50)}, "no-lrn": {0: files(0.46), 1: files(0.48)},
                "no-overlap": {0: files(0.40), 1: files(0.44)}}
    result = claim.summarise(claim, _points(claim, measured))
    assert result["deltas"]["no-lrn"] == pytest.approx(0.02), f"deltas {result['deltas']}"
    assert result["verdict"] == stats.PARTLY, f"verdict {result['verdict']} for gains inside the seed spread"


def test_aux_heads_small_effect_holds():
    claim = registry.get("aux-heads")
    path = "metrics/evaluate/googlenet-1.json"
    files = {path: {"top1_error_1crop": 0.5, "top5_error_1crop": 0.1, "top1_error_10crop": 0.5,
                    "top5_error_10crop": 0.1}}
    other = {path: {**files[path], "top5_error_1crop": 0.105}}
    result = claim.summarise(claim, _points(claim, {"aux": {0: files}, "no-aux": {0: other}}))
    assert result["verdict"] == stats.HELD, f"a 0.5-point change is small: {result['verdict']}"


def test_deepface_summary_orderings():
    claim = registry.get("deepface-scale")
    errors = {"ids14": 0.10, "ids30": 0.12, "full": 0.15, "frac50": 0.2, "frac20": 0.3, "frac10": 0.5,
              "sub1": 0.16, "sub2": 0.14, "sub3": 0.2}
    measured = {name: {0: {"metrics/train/deepface.json": {"best_val_error": e}}} for name, e in errors.items()}
    result = claim.summarise(claim, _points(claim, measured))
    assert result["verdict"] == stats.PARTLY, f"sub2 beats the full net, so depth fails: {result['findings']}"
    assert result["table"]["columns"][-1] == "paper (SFC)", "the paper's error is a column"


def test_crops_models_summary():
    claim = registry.get("crops-models")
    files = {"metrics/ensemble/googlenet.json": {"top5_error_7model_1crop": 0.09, "top5_error_7model_10crop": 0.08,
                                                 "top1_error_7model_1crop": 0.4, "top1_error_7model_10crop": 0.39}}
    for k in range(1, 8):
        files[f"metrics/evaluate/googlenet-{k}.json"] = {"top5_error_1crop": 0.12 + k / 1000,
                                                         "top5_error_10crop": 0.11 + k / 1000}
    result = claim.summarise(claim, _points(claim, {"ensemble": {0: files}}))
    assert result["single_members"][1]["n"] == 7, "the 1-model row spreads over the 7 members"
    assert result["verdict"] == stats.HELD, f"verdict {result['verdict']}: {result['findings']}"


def test_register_rejects_incomplete_claim():
    with pytest.raises(ValueError, match="needs either"):
        registry.register(Claim(name="incomplete", title="t", text="t", source="s", method="m",
                                variants=(Variant("a"),)))
    assert "incomplete" not in registry.CLAIMS, "a rejected claim must not stay registered"


def test_point_overrides_put_seed_last():
    claim = Claim(name="x", title="t", text="t", source="s", method="m", seed_keys=("train.a.seed",),
                  overrides={"train.a.seed": 9, "train.a.epochs": 2})
    values = claim.point_overrides(Variant("v", {"train.a.lr": 0.1}), 3)
    assert values == {"train.a.seed": 3, "train.a.epochs": 2, "train.a.lr": 0.1}, f"overrides {values}"
    assert isinstance(Point(Variant("v"), 0, "x-v-s0").files, dict), "points start with no files"


def test_ablation_at_chance_is_not_clear():
    claim = registry.get("lrn-pooling")
    path = "metrics/evaluate/alexnet.json"

    def files(top1):
        return {path: {"classes": 10.0, "top1_error_1crop": top1, "top5_error_1crop": 0.5,
                       "top1_error_10crop": top1, "top5_error_10crop": 0.5}}

    measured = {"base": {0: files(0.40), 1: files(0.42)}, "no-lrn": {0: files(0.90), 1: files(0.90)},
                "no-overlap": {0: files(0.50), 1: files(0.52)}}
    result = claim.summarise(claim, _points(claim, measured))
    assert result["verdict"] == stats.PARTLY, f"a run at chance cannot confirm a small gain: {result['verdict']}"
    assert any("2 of 2 run(s) stayed at chance" in f for f in result["findings"]), f"findings {result['findings']}"
