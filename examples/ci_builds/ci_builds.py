"""Continuous integration: how a pull request's size and tests decide its builds.

A second scenario for the unchanged engine, in one file (priors in ``ci_builds.yaml``):

1. **Pull requests** (plate ``prs``). Lines changed are log-normal; test coverage is
   a Beta draw. Whether the PR carries a bug is a Bernoulli whose log-odds grow with
   the log of its lines and fall with its coverage, around a calibrated intercept.
2. **Builds** (plate ``builds``, ``shape.builds_per_pr`` per PR). A build takes longer
   the more lines changed; it fails more often when the PR carries a bug, and when
   the change is large (more tests touched, more of them flaky), around a second
   calibrated intercept.

So a PR's size confounds the bug's effect on its builds: it raises both. Comparing
failure rates of buggy and clean PRs overstates the effect; adjusting for
``lines_changed`` (``causalsynth graph --adjust has_bug builds.failed``) recovers
the truth that ``causalsynth effects`` measures on twin worlds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from causalsynth.spec.modeling import Calibration, Marginal, Option, Signature, Table, Task, derived

NAME = "ci_builds"
VERSION = "1.0.0"
DEFAULTS = "ci_builds.yaml"

TABLES = (
    Table("pull_requests", plates=("prs",), key="pr_id"),
    Table("builds", plates=("prs", "builds"), key="build_id"),
)
CALIBRATION = (
    Calibration("bug", site="bug_probability", target="bug.rate"),
    Calibration("failure", site="builds.failure_probability", target="build.failure_rate"),
)
MARGINALS = (
    Marginal("pull_requests.has_bug", "bug.rate", headline="buggy PRs"),
    Marginal("builds.failed", "build.failure_rate", headline="failed builds"),
)
OPTIONS = (Option("--builds-per-pr", "shape.builds_per_pr", "CI builds of each PR."),)
SIGNATURES = (Signature("builds.failed", by="pull_requests.has_bug", direction="higher"),)
# Which builds fail, from what is known before the build runs (and its duration, a sibling of the outcome).
TASKS = (Task("build_failure", table="builds", kind="predict",
              features=("duration_s", "pull_requests.lines_changed", "pull_requests.test_coverage"),
              binary="failed", continuous="failure_probability", probability="builds.failure_probability"),)
DESCRIPTIONS = {
    "lines_changed": "Size of the change, in lines (added plus deleted; continuous)",
    "test_coverage": "Share of changed lines covered by tests",
    "bug_probability": "Probability that the PR carries a bug (ground truth)",
    "has_bug": "Whether the PR carries a bug",
    "builds.duration_s": "Wall-clock time of the build, in seconds",
    "builds.failure_probability": "Probability that the build fails (ground truth)",
    "builds.failed": "Whether the build failed",
}


def model(p, n_prs: int) -> None:
    """Sample ``n_prs`` pull requests and their builds."""
    pr, build = p.pull_request, p.build
    with numpyro.plate("prs", n_prs, dim=-2):
        lines = numpyro.sample("lines_changed", dist.LogNormal(pr.log_lines_mean, pr.log_lines_sd))
        coverage = numpyro.sample("test_coverage", dist.Beta(pr.coverage_a, pr.coverage_b))
        bug_logit = p.intercepts.bug + p.bug.per_log_line * jnp.log(lines) + p.bug.per_coverage * coverage
        bug = numpyro.sample("has_bug", dist.Bernoulli(
            derived("bug_probability", jax.nn.sigmoid(bug_logit), constraints.unit_interval)))
    with numpyro.plate("prs", n_prs, dim=-2), numpyro.plate("builds", p.shape.builds_per_pr, dim=-1):
        numpyro.sample("builds.duration_s", dist.LogNormal(
            jnp.log(build.base_duration_s) + build.duration_per_log_line * jnp.log(lines), build.duration_sd))
        failure = jax.nn.sigmoid(p.intercepts.failure + build.bug_logit * bug
                                 + build.failure_per_log_line * jnp.log(lines))
        numpyro.sample("builds.failed", dist.Bernoulli(
            derived("builds.failure_probability", failure, constraints.unit_interval)))
