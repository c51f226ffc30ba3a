"""`causalsynth validate` and `causalsynth report` on real and corrupted datasets."""

from __future__ import annotations

import base64
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from causalsynth.cli import app
from causalsynth.config import load_config
from causalsynth.dataset import sample_dataset, sha256
from causalsynth.quality import validate_dataset
from conftest import SMALL_BLOCKS

runner = CliRunner()


@pytest.fixture(scope="module")
def small(tmp_path_factory, small_config) -> Path:
    out = tmp_path_factory.mktemp("quality") / "ds"
    sample_dataset(config=small_config, n_prs=3_000, seed=12, out=out)
    return out


def failed(directory) -> set[str]:
    return {c.check for c in validate_dataset(directory) if not c.passed}


def test_default_dataset_validates(dataset_20k, tmp_path):
    result = runner.invoke(app, ["validate", str(dataset_20k), "--json", str(tmp_path / "v.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["passed"] and len(report["checks"]) > 80
    names = [c["check"] for c in report["checks"]]
    for expected in ("checksum flow_steps.parquet", "rows flow_steps", "completeness flow_steps",
                     "unique key flow_steps.step_id", "foreign key flow_steps.flow_id → ecommerce_flows",
                     "range ecommerce_flows.conversion_probability",
                     "time order ecommerce_flows.started_at ≤ flow_steps.started_at",
                     "marginal pull_requests.has_performance_regression",
                     "marginal ecommerce_flows.device_type=MOBILE"):
        assert expected in names, expected
    assert any(n.startswith("shape system_runs.response_time_ms is lognormal") for n in names)
    assert any(n.startswith("signature ecommerce_flows.converted lower") for n in names)


def test_a_dataset_validates_against_its_own_config(tmp_path):
    config = load_config(overrides=["regression.rate=0.35", SMALL_BLOCKS])
    sample_dataset(config=config, n_prs=4_000, seed=2, out=tmp_path / "ds")
    checks = {c.check: c for c in validate_dataset(tmp_path / "ds")}
    regression = checks["marginal pull_requests.has_performance_regression"]
    assert regression.passed and regression.target == 0.35
    assert all(c.passed for c in checks.values())


def _copy(small: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(small, target)
    return target


def _rewrite(directory: Path, table: str, change) -> None:
    """Rewrite one table through ``change`` and record the new file's checksum, so that
    only the check aimed at is failed, not the checksum one as well."""
    path = directory / f"{table}.parquet"
    pq.write_table(change(pq.read_table(path)), path)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["tables"][table]["sha256"] = sha256(path)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def _set_column(table: pa.Table, name: str, values) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(index).with_nullable(True), values)


def test_flipped_byte_fails_the_checksum(small, tmp_path):
    copy = _copy(small, tmp_path)
    path = copy / "system_runs.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert "checksum system_runs.parquet" in failed(copy)
    assert runner.invoke(app, ["validate", str(copy)]).exit_code == 1


def test_deleted_child_rows_fail_the_row_count(small, tmp_path):
    copy = _copy(small, tmp_path)
    _rewrite(copy, "flow_steps", lambda t: t.slice(0, t.num_rows - 10))
    assert failed(copy) == {"rows flow_steps"}


def test_broken_foreign_key(small, tmp_path):
    copy = _copy(small, tmp_path)

    def orphan(t):
        ids = t.column("flow_id").to_numpy().copy()
        ids[5] = 10**12
        return t.set_column(t.schema.get_field_index("flow_id"), "flow_id", pa.array(ids))

    _rewrite(copy, "flow_steps", orphan)
    assert "foreign key flow_steps.flow_id → ecommerce_flows" in failed(copy)
    assert not any(name.startswith("checksum") for name in failed(copy))


def test_probability_out_of_range(small, tmp_path):
    copy = _copy(small, tmp_path)

    def too_likely(t):
        p = t.column("conversion_probability").to_numpy().copy()
        p[0] = 1.5
        return t.set_column(t.schema.get_field_index("conversion_probability"), "conversion_probability",
                            pa.array(p))

    _rewrite(copy, "ecommerce_flows", too_likely)
    assert failed(copy) == {"range ecommerce_flows.conversion_probability"}


def test_nulls_above_one_percent(small, tmp_path):
    copy = _copy(small, tmp_path)

    def holes(t):
        values = t.column("cpu_usage").to_numpy()
        mask = np.zeros(len(values), bool)
        mask[:: 50] = True  # 2 %
        return _set_column(t, "cpu_usage", pa.array(values, mask=mask))

    _rewrite(copy, "system_runs", holes)
    assert "completeness system_runs" in failed(copy)
    assert not any(name.startswith(("checksum", "rows")) for name in failed(copy))


def test_unreadable_dataset_exits_2(tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "cannot be read" in result.output


def test_an_unreadable_table_does_not_hide_the_next_tables_checks(small, tmp_path):
    copy = _copy(small, tmp_path)
    path = copy / "system_runs.parquet"
    data = bytearray(path.read_bytes())
    data[4:len(data) // 2] = bytes(len(data) // 2 - 4)  # data pages zeroed, footer intact
    path.write_bytes(bytes(data))
    checks = {c.check: c for c in validate_dataset(copy)}
    assert not checks["read system_runs"].passed
    for later in ("service_metrics", "ecommerce_flows"):  # they read system_runs' keys: reported, not dropped
        assert f"completeness {later}" in checks or not checks[f"read {later}"].passed, later
    assert checks["completeness flow_steps"].passed and checks["foreign key flow_steps.flow_id → ecommerce_flows"].passed


def test_a_world_without_clean_runs_validates_without_warnings(small, tmp_path):
    import warnings

    from causalsynth.dataset import sample_twin
    from causalsynth.interventions import load_variant

    sample_twin(factual_dir=small, intervention=load_variant("all_regressions"), out=tmp_path / "twin")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checks = validate_dataset(tmp_path / "twin")
    shapes = [c for c in checks if c.check.startswith("shape")]
    assert shapes and all(c.observed.startswith("not applicable") for c in shapes)
    assert all(c.passed for c in checks), [c.check for c in checks if not c.passed]


def test_twins_are_validated_against_what_the_intervention_leaves(small, tmp_path):
    from causalsynth.dataset import sample_twin
    from causalsynth.interventions import load_variant

    sample_twin(factual_dir=small, intervention=load_variant("no_regressions"), out=tmp_path / "twin")
    checks = {c.check: c for c in validate_dataset(tmp_path / "twin")}
    assert checks["marginal pull_requests.has_performance_regression"].expected.startswith("not checked")
    assert checks["marginal ecommerce_flows.device_type=MOBILE"].value is not None  # not downstream
    assert all(c.passed for c in checks.values())


def test_sample_ends_with_a_verdict(tmp_path):
    result = runner.invoke(app, ["sample", "--n-prs", "50", "--out", str(tmp_path / "ds"), "--set", SMALL_BLOCKS])
    assert result.exit_code == 0 and "valid: all" in result.output
    result = runner.invoke(app, ["sample", "--n-prs", "50", "--out", str(tmp_path / "ds2"), "--set", SMALL_BLOCKS,
                                 "--validate"])
    assert result.exit_code == 0 and "foreign key" in result.output


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.images, self.headings, self.sections, self._h2 = [], [], [], 0, False

    def handle_starttag(self, tag, attrs):
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag == "section":
            self.sections += 1
        self._h2 = tag == "h2"

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data):
        if self._h2:
            self.headings.append(data)
            self._h2 = False


@pytest.mark.parametrize("compare", [False, True])
def test_report_is_self_contained_html_with_every_section(small, tmp_path, default_config, compare):
    args = ["report", str(small), "--out", str(tmp_path / "report.html")]
    if compare:
        from causalsynth.dataset import sample_twin
        from causalsynth.interventions import load_variant

        sample_twin(factual_dir=small, intervention=load_variant("mobile_only"), out=tmp_path / "twin")
        args += ["--compare", str(tmp_path / "twin")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    page = _Page()
    page.feed((tmp_path / "report.html").read_text())
    assert page.stack == []
    expected = ["Validation", "Marginals against their targets", *(p.title for p in default_config.model.REPORT),
                "Causal graph of the model"]
    assert page.headings == expected
    assert page.sections == len(expected)
    per_section = 2 if compare else 1
    assert len(page.images) == per_section * (len(expected) - 1)
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
