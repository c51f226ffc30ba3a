"""A generated service graph (`service.generated`): tens of services around the five, the same for the same
seed, whose profiles compose along calls; sampled through the whole model, with incidents at added services."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_BLOCKS, read_tables

from causalsynth.config.loading import load_config
from causalsynth.errors import ConfigError
from causalsynth.jobs.sample import sample_dataset
from causalsynth.validate.quality import validate_dataset

CORE = ("gateway", "user", "product", "order", "notification")
ADDED = 12


def _paths(calls: dict, entry: str) -> dict[str, int]:
    """Call paths from ``entry`` to each service, counted by walking every path (no shared code with the
    generator's own count)."""
    out = dict.fromkeys(calls, 0)

    def walk(s: str) -> None:
        out[s] += 1
        for callee in calls[s]:
            walk(callee)

    walk(entry)
    return out


@pytest.mark.parametrize("count", [10, 30, 60])
def test_a_generated_graph_reaches_every_service_within_its_call_path_budget(count):
    config = load_config(overrides=[f"service.generated.count={count}"])
    services, calls = list(config.get("services")), config.get("service.depends_on")
    assert services[:5] == list(CORE) and len(services) == 5 + count == len(set(services))
    assert set(calls) == set(services) and config.get("telemetry.traces.operations").keys() == set(services)
    paths = _paths(calls, "gateway")  # a cycle would never return
    assert all(paths[s] >= 1 for s in services), "every service is reached from the entry"
    assert sum(paths.values()) <= config.get("service.generated.max_call_paths")
    fan_in = sum(sum(s in callees for callees in calls.values()) > 1 for s in services[5:])
    fan_out = sum(len(calls[s]) > 1 for s in services[5:])
    assert fan_in >= 1 and fan_out >= 1
    assert sum(config.get("pull_request.primary_service.shares")[s] for s in services[5:]) == 0.0


def test_an_added_services_profile_composes_with_its_callers_and_callees():
    config = load_config(overrides=["service.generated.count=30"])
    profile, calls = config.get("services"), config.get("service.depends_on")
    for s in list(profile)[5:]:
        callers = [c for c, callees in calls.items() if s in callees]
        # Each call is made by 0.3 to 1 of the caller's requests; latency adds that share of each callee's.
        sent = sum(profile[c]["throughput_rps"] for c in callers)
        assert 0.3 * sent - 0.1 <= profile[s]["throughput_rps"] <= sent + 0.1
        below = sum(profile[c]["response_time_ms"] for c in calls[s])
        assert profile[s]["response_time_ms"] > 0.3 * below
        if calls[s]:
            assert profile[s]["response_time_ms"] > max(profile[c]["response_time_ms"] for c in calls[s]) * 0.3
    levels = [config.get("telemetry.resource_level")[s] for s in list(profile)[5:]]
    assert np.std(levels) > 0.1


def test_the_graph_is_the_same_for_a_seed_and_the_five_alone_without_one():
    one = load_config(overrides=["service.generated.count=20"])
    again = load_config(overrides=["service.generated.count=20"])
    other = load_config(overrides=["service.generated.count=20", "service.generated.graph_seed=2"])
    assert one.get("service.depends_on") == again.get("service.depends_on")
    assert one.get("services") == again.get("services")
    assert one.get("service.depends_on") != other.get("service.depends_on")
    default = load_config()
    assert default.expanded is default.data and list(default.get("services")) == list(CORE)
    # The manifest records the config as given: its added services are derived again on reading.
    assert "cart" not in one.data["services"] and "cart" in one.get("services")


@pytest.mark.parametrize("override, message", [
    ("service.generated.max_call_paths=12", "service.generated.max_call_paths: 12 call paths from gateway are "
                                            "too few for 20 added services"),
    ("service.generated.count=-1", "service.generated.count: -1 must be >= 0"),
])
def test_a_graph_that_cannot_be_built_names_its_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(overrides=["service.generated.count=20", override])


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> tuple[Path, dict[str, pd.DataFrame]]:
    out = tmp_path_factory.mktemp("topology") / "large"
    sample_dataset(config=load_config(overrides=[
        SMALL_BLOCKS, f"service.generated.count={ADDED}", "telemetry.enabled=true", "telemetry.traces.enabled=true",
        "telemetry.traces.per_run=2", "telemetry.logs.enabled=true", "telemetry.faults.rate=0.6"]), n_prs=40,
        seed=11, to=out)
    return out, read_tables(out)


def test_a_large_system_is_sampled_through_every_table_and_validates(large):
    out, t = large
    # Every structural check (40 PRs are too few for the rates, which the default's own tests hold).
    statistical = ("marginal", "headline", "signature", "shape")
    report = [c for c in validate_dataset(out) if not c.check.startswith(statistical)]
    assert len(report) > 200 and all(c.passed for c in report), [(c.check, c.observed) for c in report
                                                                  if not c.passed]
    n_services = 5 + ADDED
    assert len(t["service_metrics"]) == len(t["system_runs"]) * n_services
    assert t["service_metrics"].service_name.nunique() == n_services
    assert t["trace_spans"].service_name.nunique() == n_services
    # PRs change only the team's five; the added ones see incidents of every other cause.
    assert set(t["pull_requests"].primary_service.astype(str)) <= set(CORE)
    assert t["pull_requests"].services_touched.max() <= 5
    roots = t["system_runs"].root_cause_service.astype(str)
    injected = t["system_runs"].fault_kind.astype(str).isin(
        ["CPU_HOG", "MEMORY_LEAK", "DISK_PRESSURE", "NETWORK_DELAY", "PACKET_LOSS", "SOCKET_EXHAUSTION",
         "CODE_EXCEPTION"])
    assert (~roots[injected].isin(CORE)).mean() > 0.4


@pytest.mark.slow
def test_rcaeval_ranks_a_large_systems_cases_over_every_service(large, tmp_path):
    import warnings

    from RCAEval.e2e.baro import mmbaro
    from typer.testing import CliRunner

    from causalsynth.cli import app

    out, t = large
    result = CliRunner().invoke(app, ["export", str(out), "--format", "re2", "--out", str(tmp_path / "re2")])
    assert result.exit_code == 0, result.output
    cases = json.loads((tmp_path / "re2" / "cases.json").read_text())["cases"]
    at_added = [c for c in cases if c["root_cause_service"] not in CORE][:8]
    assert len(at_added) == 8
    found = 0
    for case in at_added:
        folder = tmp_path / "re2" / case["case"]
        metric = pd.read_csv(folder / "simple_metrics.csv").ffill().fillna(0)
        assert metric.shape[1] == 1 + (5 + ADDED) * 7  # time, then seven columns per service
        data = {name: pd.read_csv(folder / f"{name}.csv") for name in ("logts", "tracets_err", "tracets_lat")}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ranks = mmbaro(data | {"metric": metric}, int((folder / "inject_time.txt").read_text()), dataset="re2-tt",
                           anomalies=None, dk_select_useful=False, sli=None, verbose=False)["ranks"]
        services = list(dict.fromkeys(r.split("_")[0] for r in ranks))
        assert set(services) <= set(t["service_metrics"].service_name.astype(str))
        found += case["root_cause_service"] in services[:5]
    # A guess finds a root among 17 services' first five about 30 % of the time.
    assert found >= 4, found
