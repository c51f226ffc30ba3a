"""`causalsynth validate` and `causalsynth report` on real and corrupted datasets."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SMALL_BLOCKS, part_path, record_part, rewrite, sha256, with_value
from typer.testing import CliRunner

from causalsynth.cli import app
from causalsynth.config.loading import load_config
from causalsynth.jobs.sample import sample_dataset
from causalsynth.validate.checks import Check
from causalsynth.validate.quality import ks_distance, validate_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def small(tmp_path_factory, small_config) -> Path:
    out = tmp_path_factory.mktemp("quality") / "ds"
    sample_dataset(config=small_config, n_prs=3_000, seed=12, to=out)
    return out


@pytest.fixture(scope="module")
def intact(small) -> set[str]:
    """The names of every check of the intact dataset."""
    return {c.check for c in validate_dataset(small)}


def failed(directory) -> set[str]:
    return {c.check for c in validate_dataset(directory) if not c.passed}


def validated(directory: Path, tmp_path: Path, *options: str) -> tuple[int, dict[str, Check]]:
    """``causalsynth validate`` run once: its exit code, and its checks as its ``--json`` wrote them."""
    report = tmp_path / "checks.json"
    report.unlink(missing_ok=True)
    result = runner.invoke(app, ["validate", str(directory), "--json", str(report), *options])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    checks = [Check(**{k: v for k, v in c.items() if k != "verdict"})
              for c in json.loads(report.read_text())["checks"]]
    return result.exit_code, {c.check: c for c in checks}


def test_default_dataset_validates(dataset_20k, tmp_path):
    result = runner.invoke(app, ["validate", str(dataset_20k), "--json", str(tmp_path / "v.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["passed"] and len(report["checks"]) > 150
    by_name = {c["check"]: c for c in report["checks"]}
    for expected in ("checksum flow_steps", "rows flow_steps", "completeness flow_steps",
                     "schema flow_steps", "unique key flow_steps.step_id", "keys as written pull_requests.pr_id",
                     "foreign key flow_steps.flow_id → ecommerce_flows", "parent as written flow_steps.flow_id",
                     "rows per parent system_runs → service_metrics", "rows per parent ecommerce_flows → flow_steps",
                     "domain ecommerce_flows.conversion_probability", "domain ecommerce_flows.device_type",
                     "time order ecommerce_flows.started_at ≤ flow_steps.started_at",
                     "identity ecommerce_flows: converted exactly when paid and confirmed",
                     "identity system_runs: calendar of started_at",
                     "marginal pull_requests.has_performance_regression",
                     "marginal ecommerce_flows.device_type=MOBILE", "number pull_requests.pr_number",
                     "derived system_runs.total_requests", "derived ecommerce_flows.conversion_probability",
                     "possible pull_requests.has_performance_regression", "headline conversion",
                     "identity flow_steps: each step calls its step type's service"):
        assert by_name[expected]["verdict"] == "pass", expected
    assert by_name["rows per parent system_runs → service_metrics"]["expected"] == "exactly 5"
    assert by_name["rows per parent ecommerce_flows → flow_steps"]["expected"].startswith("1 to ")
    assert any(n.startswith("shape system_runs.response_time_ms is lognormal") for n in by_name)
    assert any(n.startswith("signature ecommerce_flows.converted lower") for n in by_name)
    # Every identity the model declares is a check; every number has a domain or says it has none.
    model = load_config().model
    tables = json.loads((dataset_20k / "manifest.json").read_text())["tables"]
    assert {f"identity {i.table}: {i.name}" for i in model.IDENTITIES if i.table in tables} <= set(by_name)
    ground_truth = by_name["identity system_runs: no root cause exactly without a fault"]  # needs --series
    assert ground_truth["verdict"] == "n/a" and "not in this dataset" in ground_truth["observed"]
    unbounded = [c for c in report["checks"] if c["check"].startswith("domain") and not c["applicable"]]
    assert [c["check"] for c in unbounded] == ["domain pull_requests.release_pressure"]
    assert unbounded[0]["verdict"] == "n/a" and unbounded[0]["observed"] == "not bounded by the model"


def test_a_dataset_validates_against_its_own_config(tmp_path):
    config = load_config(overrides=["regression.rate=0.35", SMALL_BLOCKS])
    sample_dataset(config=config, n_prs=4_000, seed=2, to=tmp_path / "ds")
    checks = {c.check: c for c in validate_dataset(tmp_path / "ds")}
    regression = checks["marginal pull_requests.has_performance_regression"]
    assert regression.passed and regression.target == 0.35
    assert all(c.passed for c in checks.values())


@pytest.mark.parametrize("family", ["lognormal", "beta"])
def test_ks_distance_is_scipys_kstest_statistic(family):
    from scipy import stats

    rng = np.random.default_rng(7)
    samples = [rng.lognormal(4, 0.6, 5_000), rng.gamma(2, 50, 300)] if family == "lognormal" else \
        [rng.beta(2, 30, 5_000), rng.uniform(0.01, 0.2, 300)]
    for x in samples:
        if family == "lognormal":
            logs = np.log(x)
            expected = stats.kstest(logs, "norm", args=(logs.mean(), logs.std())).statistic
        else:
            mean, var = x.mean(), x.var()
            common = mean * (1 - mean) / var - 1
            expected = stats.kstest(x, "beta", args=(mean * common, (1 - mean) * common)).statistic
        assert ks_distance(x, family) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_what_is_computed_again_comes_from_the_model_program(small_config):
    """Columns computed from stored columns alone are recomputed; those with hidden noise upstream are not."""
    from causalsynth.engine.program import Program
    from causalsynth.validate.recompute import plan

    program = Program(small_config)
    tables = {t.table.name for t in program.tables}
    found = plan(program, tables)
    refs = lambda sites: {found.stored[s].ref: {found.stored[p].ref for p in sites[s]} for s in sites}  # noqa: E731
    derived, possible = refs(found.derived), refs(found.possible)
    assert derived["system_runs.total_requests"] == {"system_runs.throughput_rps", "system_runs.duration_s"}
    assert derived["service_metrics.service_name"] == set()  # a constant of each slot
    assert derived["system_runs.anomaly_probability"] == {"system_runs.load_intensity",
                                                          "pull_requests.regression_severity"}
    assert possible["pull_requests.has_performance_regression"] == {"pull_requests.regression_probability"}
    # Hidden noise upstream: the line counts, the regression's probability, the impact score.
    assert not {"pull_requests.lines_added", "pull_requests.regression_probability",
                "pull_requests.performance_impact_score", "system_runs.timeout_rate"} & set(derived)
    # Variable-length tables and timestamps are never on the list.
    assert not any(r.startswith("flow_steps.") or r.endswith("_at") for r in derived | possible)
    # An intervened site is a parent, never held to its distribution.
    assert "pull_requests.has_performance_regression" not in refs(plan(
        program, tables, {"has_performance_regression"}).possible)


# --- the corruption corpus ---------------------------------------------------------------
#
# Each case edits one table of a real sample *and* records the new file's checksum and row
# count in the manifest, as a pipeline that post-processes a dataset would: only checks of
# meaning can catch it. Each names the check that must fail.

def _copy(small: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(small, target)
    return target


def _drop_steps_of_flows(frame, flows):
    return frame[~frame.flow_id.isin(flows)]


def _swap_step_times(frame):
    frame = frame.copy()
    first = frame.groupby("flow_id").head(2)
    pairs = first.groupby("flow_id").filter(lambda g: len(g) == 2 and g.started_at.iloc[0] < g.started_at.iloc[1])
    index = pairs.index.to_numpy().reshape(-1, 2)[:100]
    times = frame.started_at.to_numpy().copy()
    times[index[:, 0]], times[index[:, 1]] = times[index[:, 1]], times[index[:, 0]]
    frame["started_at"] = times
    return frame


def _convert_unpaid(steps_of):
    def change(frame):
        paid = set(steps_of.flow_id[steps_of.success & (steps_of.step_type == "PAYMENT")])
        unpaid = np.flatnonzero(~frame.flow_id.isin(paid).to_numpy())[:200]
        return with_value(frame, "converted", unpaid, True)
    return change


def _swap_parents(frame):
    frame = frame.copy()
    ids = frame.pr_id.to_numpy().copy()
    ids[[5, 10]] = ids[[10, 5]]  # runs of PRs 2 and 3 trade one run each: counts stay 5 and 5
    frame["pr_id"] = ids
    return frame


def _duplicate_key(frame):
    frame = frame.copy()
    ids = frame.flow_id.to_numpy().copy()
    ids[10] = ids[9]
    frame["flow_id"] = ids
    return frame


def _nan_latency(table: pa.Table) -> pa.Table:
    values = table.column("latency_ms").to_numpy().copy()
    values[8] = np.nan
    return table.set_column(table.schema.get_field_index("latency_ms"), table.schema.field("latency_ms"),
                            pa.array(values))


_nan_latency.on_arrow = True


def _drop_flow(frame):
    return frame[frame.flow_id != 7]


def _swap_rows(column: str, a: int, b: int):
    def change(frame):
        frame = frame.copy()
        values = frame[column].to_numpy().copy()
        values[[a, b]] = values[[b, a]]
        frame[column] = pd.Categorical(values, categories=frame[column].cat.categories)
        return frame
    return change


def _serve_from_another(frame):
    served = frame.service_name.iloc[0]
    other = next(s for s in frame.service_name.cat.categories if s != served)
    return with_value(frame, "service_name", [0], other)


def _one_more_request(frame):
    frame = frame.copy()
    frame.loc[frame.index[:10], "total_requests"] += 1
    return frame


def _impossible_regression(frame):
    return with_value(frame, "regression_probability", [int(frame.has_performance_regression.argmax())], 0.0)


ALL = slice(None)
CORRUPTIONS = {
    # case: (table, change, the check that must fail)
    "steps of 50 flows deleted": ("flow_steps", lambda f: _drop_steps_of_flows(f, range(100, 150)),
                                  "rows per parent ecommerce_flows → flow_steps"),
    "20% of service rows dropped": ("service_metrics", lambda f: f.sample(frac=0.8, random_state=0).sort_index(),
                                    "rows per parent system_runs → service_metrics"),
    "PR rows shuffled": ("pull_requests", lambda f: f.sample(frac=1.0, random_state=0),
                         "keys as written pull_requests.pr_id"),
    "step timestamps swapped within flows": ("flow_steps", _swap_step_times,
                                             "identity ecommerce_flows: steps in time order"),
    "every abandonment reason one level": ("ecommerce_flows", lambda f: with_value(f, "abandonment_reason", ALL, "USER_EXIT"),
                                           "identity ecommerce_flows: no reason exactly when converted"),
    "every service HEALTHY": ("service_metrics", lambda f: with_value(f, "health_status", ALL, "HEALTHY"),
                              "identity service_metrics: healthy is a score above its threshold"),
    "an undeclared device": ("ecommerce_flows", lambda f: with_value(f, "device_type", [3], "PHONE"),
                             "domain ecommerce_flows.device_type"),
    "negative cart value": ("ecommerce_flows", lambda f: with_value(f, "cart_value", [4], -12.5),
                            "domain ecommerce_flows.cart_value"),
    "negative duration": ("system_runs", lambda f: with_value(f, "duration_s", [4], -1.0), "domain system_runs.duration_s"),
    "negative throughput": ("system_runs", lambda f: with_value(f, "throughput_rps", [4], -3.0),
                            "domain system_runs.throughput_rps"),
    "anomaly score above 1": ("system_runs", lambda f: with_value(f, "anomaly_score", [f.is_anomalous.argmax()], 1.5),
                              "domain system_runs.anomaly_score"),
    "NaN latency": ("flow_steps", _nan_latency, "domain flow_steps.latency_ms"),
    "success rate 1 on every run": ("system_runs", lambda f: with_value(f, "success_rate", ALL, 1.0),
                                    "identity system_runs: rates sum to 1"),
    "a duplicated key": ("ecommerce_flows", _duplicate_key, "unique key ecommerce_flows.flow_id"),
    "a swapped parent key": ("system_runs", _swap_parents, "parent as written system_runs.pr_id"),
    "a whole flow dropped": ("ecommerce_flows", _drop_flow, "rows per parent system_runs → ecommerce_flows"),
    # Rules the model applies without randomness: each computed again, or a declared identity.
    "request counts not throughput × duration": ("system_runs", _one_more_request, "derived system_runs.total_requests"),
    "a step served by another service": ("flow_steps", _serve_from_another,
                                         "identity flow_steps: each step calls its step type's service"),
    "two services' names swapped within a run": ("service_metrics", _swap_rows("service_name", 0, 1),
                                                 "derived service_metrics.service_name"),
    "a PR number not its key's": ("pull_requests", lambda f: with_value(f, "pr_number", [7], "PR-000099"),
                                  "number pull_requests.pr_number"),
    "a regression of probability 0": ("pull_requests", _impossible_regression,
                                      "possible pull_requests.has_performance_regression"),
    "a health status not its score's": ("service_metrics", lambda f: with_value(f, "health_status", [3], "UNHEALTHY"),
                                        "derived service_metrics.health_status"),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_corruption_fails_the_check_that_names_it(small, tmp_path, case):
    copy = _copy(small, tmp_path)
    table, change, check = CORRUPTIONS[case]
    rewrite(copy, table, change)
    if case == "a whole flow dropped":  # with its steps
        rewrite(copy, "flow_steps", lambda f: f[f.flow_id != 7])
    # Without re-sampling: the check of meaning that names the change catches it on its own.
    exit_code, checks = validated(copy, tmp_path, "--resample", "0")
    assert exit_code == 1 and not checks[check].passed, checks[check]
    integrity = [c for name, c in checks.items() if name.startswith("checksum") or name.count(" ") == 1
                 and name.startswith("rows ")]
    assert len(integrity) == 10 and all(c.passed for c in integrity), \
        "the manifest was updated: integrity checks cannot be what catches it"


def test_converted_without_payment_breaks_the_funnel(small, tmp_path):
    copy = _copy(small, tmp_path)
    steps = pq.read_table(part_path(copy, "flow_steps"), columns=["flow_id", "step_type", "success"]).to_pandas()
    rewrite(copy, "ecommerce_flows", _convert_unpaid(steps))
    checks = {c.check: c for c in validate_dataset(copy)}
    funnel = checks["identity ecommerce_flows: converted exactly when paid and confirmed"]
    assert not funnel.passed and funnel.observed.startswith("200 of ")


def test_a_truncated_file_is_reported_and_its_checks_not_dropped(small, intact, tmp_path):
    copy = _copy(small, tmp_path)
    path = part_path(copy, "flow_steps")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["tables"]["flow_steps"]["parts"][0]["sha256"] = sha256(path)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    exit_code, checks = validated(copy, tmp_path)
    assert exit_code == 1 and set(checks) == intact, "a check that cannot run is reported, never dropped"
    assert not checks["rows flow_steps"].passed and "unreadable" in checks["rows flow_steps"].observed
    not_run = {name for name, c in checks.items() if c.observed.startswith("not run")}
    assert {"schema flow_steps", "rows per parent ecommerce_flows → flow_steps",
            "identity ecommerce_flows: converted exactly when paid and confirmed"} <= not_run
    assert all(not checks[name].passed for name in not_run)
    assert checks["identity system_runs: rates sum to 1"].passed  # other tables are still checked


@pytest.mark.parametrize("table", ["pull_requests", "system_runs", "service_metrics", "ecommerce_flows", "flow_steps"])
def test_a_missing_table_fails_every_check_that_reads_it(small, intact, tmp_path, table):
    copy = _copy(small, tmp_path)
    part_path(copy, table).unlink()
    exit_code, checks = validated(copy, tmp_path)
    assert exit_code == 1 and set(checks) == intact
    assert not checks[f"checksum {table}"].passed and not checks[f"rows {table}"].passed
    assert checks[f"schema {table}"].observed.startswith("not run: ") and f"{table}/part-000000.parquet" in checks[
        f"schema {table}"].observed


def test_flipped_byte_fails_the_checksum(small, tmp_path):
    copy = _copy(small, tmp_path)
    path = part_path(copy, "system_runs")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    exit_code, checks = validated(copy, tmp_path)
    assert exit_code == 1 and not checks["checksum system_runs"].passed


def test_deleted_child_rows_fail_the_row_count(small, tmp_path):
    copy = _copy(small, tmp_path)
    path = part_path(copy, "flow_steps")
    pq.write_table(pq.read_table(path).slice(0, 10), path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["tables"]["flow_steps"]["parts"][0]["sha256"] = sha256(path)  # the checksum, not the row count
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert "rows flow_steps" in failed(copy)


def test_broken_foreign_key(small, tmp_path):
    copy = _copy(small, tmp_path)
    rewrite(copy, "flow_steps", lambda f: with_value(f, "flow_id", [5], 10**12))
    assert "foreign key flow_steps.flow_id → ecommerce_flows" in failed(copy)


def test_nulls_above_one_percent(small, tmp_path):
    copy = _copy(small, tmp_path)

    def holes(t):
        values = t.column("cpu_usage").to_numpy()
        mask = np.zeros(len(values), bool)
        mask[:: 50] = True  # 2 %
        index = t.schema.get_field_index("cpu_usage")
        return t.set_column(index, t.schema.field(index).with_nullable(True), pa.array(values, mask=mask))

    for part in range(3):  # every block's part: 2 % of the table
        path = part_path(copy, "system_runs", part)
        pq.write_table(holes(pq.read_table(path)), path)
        record_part(copy, "system_runs", part)
    assert "completeness system_runs" in failed(copy)


def test_unreadable_dataset_exits_2(tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and str(tmp_path / "nothing") in result.output


def test_an_unreadable_table_does_not_hide_the_next_tables_checks(small, intact, tmp_path):
    copy = _copy(small, tmp_path)
    path = part_path(copy, "system_runs")
    data = bytearray(path.read_bytes())
    data[4:len(data) // 2] = bytes(len(data) // 2 - 4)  # data pages zeroed, footer intact
    path.write_bytes(bytes(data))
    checks = {c.check: c for c in validate_dataset(copy)}
    assert set(checks) == intact
    assert not checks["checksum system_runs"].passed
    assert checks["completeness flow_steps"].passed and checks["foreign key flow_steps.flow_id → ecommerce_flows"].passed
    # Checks that read system_runs' rows are reported as not run, not dropped.
    assert checks["identity system_runs: rates sum to 1"].observed.startswith("not run")


# --- worlds that must validate ----------------------------------------------------------------

@pytest.mark.parametrize("variant", sorted(p.stem for p in (Path(__file__).parents[1] / "configs" / "variants")
                                           .glob("*.yaml")))
def test_every_shipped_variant_twin_validates_without_warnings(small, tmp_path, variant):
    import warnings

    from causalsynth.engine.interventions import load_variant
    from causalsynth.jobs.sample import sample_twin

    sample_twin(factual_dir=small, intervention=load_variant(variant), to=tmp_path / "twin")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exit_code, by_name = validated(tmp_path / "twin", tmp_path)
    checks = list(by_name.values())
    assert exit_code == 0 and all(c.passed for c in checks), [(c.check, c.observed) for c in checks if not c.passed]
    if variant == "all_regressions":  # no clean runs: shapes of clean runs have nothing to test
        shapes = [c for c in checks if c.check.startswith("shape")]
        assert shapes and all(c.verdict == "n/a" for c in shapes)
    if variant == "no_regressions":
        regression = next(c for c in checks if c.check == "marginal pull_requests.has_performance_regression")
        assert regression.verdict == "n/a" and "moved by the intervention" in regression.observed
        mobile = next(c for c in checks if c.check == "marginal ecommerce_flows.device_type=MOBILE")
        assert mobile.value is not None  # not downstream of the intervention: still checked


@pytest.mark.parametrize("args", [["--do", "has_performance_regression=true"], ["--set", "regression.rate=1"]])
def test_extreme_worlds_validate(tmp_path, args):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning may reach the user
        result = runner.invoke(app, ["sample", "--n-prs", "200", "--out", str(tmp_path / "ds"),
                                     "--set", SMALL_BLOCKS, *args])
    assert result.exit_code == 0, result.output
    assert "valid: all" in result.output


def test_sample_ends_with_a_verdict(tmp_path):
    result = runner.invoke(app, ["sample", "--n-prs", "50", "--out", str(tmp_path / "ds"), "--set", SMALL_BLOCKS])
    assert result.exit_code == 0 and "valid: all" in result.output
    result = runner.invoke(app, ["sample", "--n-prs", "50", "--out", str(tmp_path / "ds2"), "--set", SMALL_BLOCKS,
                                 "--validate"])
    assert result.exit_code == 0 and "foreign key" in result.output


class _Page(HTMLParser):
    """The report's structure: balanced tags, section ids in order, h2 headings, what it would fetch."""

    def __init__(self):
        super().__init__()
        self.stack, self.headings, self.sections, self.fetches, self._h2 = [], [], [], [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in ("meta", "br", "img", "link"):
            self.stack.append(tag)
        self.fetches += [v for k, v in attrs.items() if k in ("src", "href") and v and not v.startswith(("#", "data:"))]
        if tag == "section":
            self.sections.append(attrs.get("id"))
        self._h2 = tag == "h2"

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data):
        if self._h2:
            self.headings.append(data)
            self._h2 = False


@pytest.mark.parametrize("compare", [False, True])
def test_report_reads_top_down_and_is_self_contained(small, tmp_path, default_config, compare):
    args = ["report", str(small), "--out", str(tmp_path / "report.html")]
    if compare:
        from causalsynth.engine.interventions import load_variant
        from causalsynth.jobs.sample import sample_twin

        sample_twin(factual_dir=small, intervention=load_variant("no_regressions"), to=tmp_path / "twin")
        args += ["--compare", str(tmp_path / "twin")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "report.html").read_text()
    page = _Page()
    page.feed(text)
    assert page.stack == [] and page.fetches == []  # nothing to fetch: it opens offline
    assert page.sections == ["verdict", "story", "story-more", "graph", "details", "checks"]
    assert page.headings == ["Headline rates", "The causal story", "Causal graph", "Details", "Checks"]
    plots = default_config.model.REPORT
    charts = (sum(p.kind in ("effect", "distribution", "mix") for p in plots) + 1  # + the marginals
              + sum(len(p.by) for p in plots if p.kind == "funnel"))
    assert text.count("vegaEmbed('#chart") == charts and text.count("<noscript><svg") == charts
    assert text.index("valid, all") < text.index("id='headlines'") < text.index("vegaEmbed('#chart1'")
    assert "<details class='all'>" in text and "<details open" not in text  # nothing fails: folded
    graph = text[text.index("<section id='graph'>"):text.index("<section id='details'>")]
    assert ">has_performance_regression<" in graph and ">_" not in graph
    # a twin's report highlights what its intervention set, and gives the true effects beside the naive ones
    assert ("fill=\"#fde2b8\"" in graph) == compare
    assert ("true effect of pull_requests.has_performance_regression = true" in text) == compare


def test_report_without_graphviz_says_so_where_the_graphs_would_be(small, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on it
    result = runner.invoke(app, ["report", str(small), "--out", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    assert "warning: Graphviz's dot program is not installed" in result.output  # said on the terminal too
    text = (tmp_path / "report.html").read_text()
    graph = text[text.index("<section id='graph'>"):text.index("<section id='details'>")]
    assert "Graphviz&#x27;s dot program is not installed" in graph and "<svg" not in graph
    assert "vegaEmbed('#chart1'" in text  # everything else is there

