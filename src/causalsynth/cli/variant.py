"""``causalsynth variant``: a factual dataset's twin under an intervention."""

from __future__ import annotations

from typing import Annotated

import typer

from causalsynth.cli.options import (
    BlocksAtOnce,
    Dataset,
    Do,
    Force,
    Model,
    Scheduler,
    Variant,
    Workers,
    enable_compilation_cache,
    intervention,
)
from causalsynth.cli.progress import destination, run_dataset_job
from causalsynth.errors import ConfigError


def variant(
    factual_dir: Dataset,
    variant: Variant = None,
    out_dir: Annotated[str, typer.Option("--out", help="Output directory (or fsspec URL) for the twin.")] = ...,
    do: Do = None,
    force: Force = False,
    workers: Workers = None,
    blocks_at_once: BlocksAtOnce = 1,
    scheduler: Scheduler = None,
    model: Model = None,
) -> None:
    """Write the twin of a factual dataset under an intervention: same seed, size, keys and noise."""
    from causalsynth.jobs.cluster import start_cluster

    cluster = start_cluster(workers, scheduler, out_dir, None)  # begun first, as `sample` does
    enable_compilation_cache(samples=cluster is None)
    from causalsynth.jobs.sample import Destination, Run, sample_twin

    def job(progress):
        chosen = intervention(variant, do)
        if chosen.is_factual:
            raise ConfigError("variant: give --variant NAME and/or --do SITE=VALUE")
        return sample_twin(factual_dir, chosen, to=Destination(out=out_dir, force=force),
                           run=Run(progress, workers, scheduler, cluster, blocks_at_once))

    run_dataset_job(job, destination(out_dir, None), cluster)
