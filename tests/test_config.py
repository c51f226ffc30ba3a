"""Config loading and validation: every class of bad input gets a message naming its key."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from causalsynth.config.loading import load_config
from causalsynth.errors import ConfigError


def error_of(overrides=(), path=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


def test_default_config_is_valid_and_complete(default_config):
    assert default_config.model.NAME == "delivery_commerce"
    assert default_config.get("regression.rate") == 0.20
    assert default_config.params.shape.runs_per_pr == 5


def test_set_overrides_one_value_and_keeps_types():
    config = load_config(overrides=["regression.rate=0.35", "run.response_time_ms=200", "shape.runs_per_pr=10"])
    assert config.get("regression.rate") == 0.35
    assert isinstance(config.get("run.response_time_ms"), float)  # a YAML int given for a float prior
    assert config.get("shape.runs_per_pr") == 10


def test_config_file_values_replace_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("regression:\n  rate: 0.3\nflow:\n  device:\n    shares: {MOBILE: 0.5, DESKTOP: 0.4, TABLET: 0.1}\n")
    config = load_config(path)
    assert config.get("regression.rate") == 0.3
    assert config.get("flow.device.shares") == {"MOBILE": 0.5, "DESKTOP": 0.4, "TABLET": 0.1}
    assert config.get("run.anomaly.rate") == 0.10  # untouched keys keep their defaults


def test_a_full_copy_of_the_defaults_is_accepted(tmp_path, default_config):
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(default_config.data, sort_keys=False))
    assert load_config(path).data == default_config.data


def test_the_defaults_are_the_engine_sections_and_the_model_file():
    engine = yaml.safe_load(resources.files("causalsynth.configs").joinpath("engine.yaml").read_text())
    model = yaml.safe_load(resources.files("causalsynth.configs").joinpath("default.yaml").read_text())
    data = load_config().data
    assert set(data) == set(engine) | set(model)
    assert data["sampling"] == engine["sampling"] and data["calendar"] == model["calendar"]
    assert data["quality"]["tolerances"] == engine["quality"]["tolerances"] | model["quality"]["tolerances"]


def test_unknown_key_in_set_names_it_and_the_closest_key():
    message = error_of(["regresion.rate=0.3"])
    assert "regresion" in message and "'regression.rate'" in message


def test_unknown_key_in_file_names_it_and_the_closest_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("regression:\n  rat: 0.3\n")
    message = error_of(path=path)
    assert "regression.rat" in message and "'rate'" in message


@pytest.mark.parametrize("override, key, allowed", [
    ("regression.rate=1.5", "regression.rate", "[0, 1]"),
    ("run.anomaly.rate=-0.1", "run.anomaly.rate", "[0, 1]"),
    ("funnel.steps.PAYMENT.attempt_success=1.2", "funnel.steps.PAYMENT.attempt_success", "[0, 1]"),
    ("flow.device.shares.MOBILE=0.7", "flow.device.shares", "sum to 1"),
    ("run.response_time_sd=0", "run.response_time_sd", "> 0"),
    ("run.response_time_ms=-5", "run.response_time_ms", "> 0"),
    ("shape.runs_per_pr=0", "shape.runs_per_pr", "> 0"),
    ("sampling.block_prs=-3", "sampling.block_prs", "> 0"),
    ("regression.effect_scale.HIGH=0", "regression.effect_scale.HIGH", "> 0"),
    ("ml.max_train_rows=0", "ml.max_train_rows", "> 0"),
    ("telemetry.metrics.cpu.autocorrelation=1.0", "telemetry.metrics.cpu.autocorrelation", "[0, 1)"),
    ("telemetry.resource_level.order=0", "telemetry.resource_level.order", "> 0"),
    ("telemetry.bursts.rate=2", "telemetry.bursts.rate", "[0, 1]"),
    ("telemetry.anomaly_s=900", "telemetry.anomaly_s", "at most the window"),
    ("telemetry.spurious_s=0", "telemetry.spurious_s", "> 0"),
    ("telemetry.spurious_mimic=-0.5", "telemetry.spurious_mimic", ">= 0"),
    ("telemetry.spurious_size=-1", "telemetry.spurious_size", ">= 0"),
    ("telemetry.spurious_near=1.5", "telemetry.spurious_near", "[0, 1]"),
    ("shape.runs_per_pr=2.5", "shape.runs_per_pr", "whole number"),
    ("regression.rate=high", "regression.rate", "a number"),
    ("funnel.steps.PAYMENT.service=billing", "funnel.steps.PAYMENT.service", "is not one of"),
])
def test_invalid_values_name_the_key_and_what_is_allowed(override, key, allowed):
    message = error_of([override])
    assert key in message and allowed in message


@pytest.mark.parametrize("override, expected", [
    ("regression.rate", "dotted.key=value"),
    ("regression=0.3", "is a section"),
])
def test_malformed_set(override, expected):
    assert expected in error_of([override])


def test_all_errors_are_reported_together():
    message = error_of(["regression.rate=2", "run.anomaly.rate=3"])
    assert "regression.rate" in message and "run.anomaly.rate" in message


def test_unreadable_or_invalid_config_file(tmp_path):
    assert "cannot read it" in error_of(path=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("regression: [unclosed\n")
    assert "not valid YAML" in error_of(path=bad)
