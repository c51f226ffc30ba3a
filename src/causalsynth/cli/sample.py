"""``causalsynth sample``: a dataset, as Parquet and/or into a database."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from causalsynth.cli.console import out, print_checks, verdict
from causalsynth.cli.options import (
    BlocksAtOnce,
    ConfigFile,
    Do,
    Force,
    Overrides,
    Scheduler,
    Variant,
    Workers,
    enable_compilation_cache,
    intervention,
    model_overrides,
)
from causalsynth.cli.progress import destination, run_dataset_job

# Options past these are the model's own (its OPTIONS), read once the config has named the model.
CONTEXT_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": True}
EPILOG = ("The chosen model adds its own options (its OPTIONS). The shipped model's: --runs-per-pr N (system "
          "runs per PR), --flows-per-run N (flows per run), --series (also per-service metric series and each "
          "run's incident), --counterfactual (with --series: each value without the run's fault), "
          "--traces (with --series: traces and their spans), --logs (with --traces: the log "
          "lines spans write). The ci_builds example's: --builds-per-pr N.")


def sample(
    ctx: typer.Context,
    n_prs: Annotated[int, typer.Option("--n-prs", help="Number of pull requests (each brings its runs, "
                                                        "service rows, flows and steps).")],
    out_dir: Annotated[Optional[str], typer.Option("--out", help="Output directory for Parquet, or an fsspec "
                                                                 "URL such as s3://bucket/prefix (written "
                                                                 "atomically).")] = None,
    seed: Annotated[int, typer.Option(help="Root random seed; same seed and config, same bytes.")] = 0,
    config: ConfigFile = None,
    set_: Overrides = None,
    force: Force = False,
    do: Do = None,
    variant: Variant = None,
    db: Annotated[Optional[str], typer.Option("--db", help="Also load into this database (SQLAlchemy URL: "
                                                          "sqlite:///file.db, postgresql+psycopg://...).")] = None,
    db_schema: Annotated[Optional[str], typer.Option("--schema", help="PostgreSQL schema for --db.")] = None,
    if_exists: Annotated[str, typer.Option("--if-exists", help="If --db already has the tables: "
                                                               "fail, replace or append.")] = "fail",
    full_validation: Annotated[bool, typer.Option("--validate", help="Print the full validation table "
                                                                     "(a one-line verdict is always shown).")] = False,
    latents: Annotated[bool, typer.Option("--latents", help="Also write the model's hidden causes as columns "
                                                            "(config: sampling.latents).")] = False,
    workers: Workers = None,
    blocks_at_once: BlocksAtOnce = 1,
    scheduler: Scheduler = None,
) -> None:
    """Sample a dataset: five linked tables as Parquet (--out) and/or into a database (--db)."""
    from causalsynth.jobs.cluster import start_cluster

    # Begun before this process imports the engine and loads the config, so that they proceed at once.
    cluster = start_cluster(workers, scheduler, out_dir, db)
    enable_compilation_cache(samples=cluster is None)
    from causalsynth.config.loading import load_config
    from causalsynth.jobs.sample import Destination, Run, sample_dataset

    overrides = list(set_ or []) + ["sampling.latents=true"] * latents
    to = Destination(out=out_dir, force=force, db=db, schema=db_schema, if_exists=if_exists)

    loaded = []  # the config, once loaded inside the job: its errors are the job's

    def job(progress):
        chosen = load_config(config, overrides)
        loaded.append(chosen.with_overrides(model_overrides(chosen.model, ctx.args)))
        return sample_dataset(loaded[0], n_prs, seed, to=to,
                              run=Run(progress, workers, scheduler, cluster, blocks_at_once),
                              intervention=intervention(variant, do))

    manifest = run_dataset_job(job, destination(out_dir, db), cluster)
    if out_dir is not None and full_validation:
        from causalsynth.validate.quality import validate_dataset

        print_checks(validate_dataset(out_dir), f"validation of {out_dir}")
    else:
        from causalsynth.validate.marginals import counted_checks

        checks = counted_checks(manifest, loaded[0])
        out.print(verdict(checks, "marginal checks on sampling's own counts")
                  + (f"  (every check: causalsynth validate {out_dir})" if out_dir is not None else ""),
                  soft_wrap=True)
