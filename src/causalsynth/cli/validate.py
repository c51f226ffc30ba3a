"""``causalsynth validate``: every check of a dataset against its manifest and config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from causalsynth.cli.console import print_checks, write_file
from causalsynth.cli.options import Dataset, Model, enable_compilation_cache
from causalsynth.errors import ConfigError


def validate(
    dataset_dir: Dataset,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results as JSON.")] = None,
    resample: Annotated[int, typer.Option("--resample", help="Blocks to sample again and compare byte for byte "
                                                             "with the stored parts (the first, the last, then "
                                                             "others at random); 0 for a dataset from another "
                                                             "engine.")] = 3,
    model: Model = None,
) -> None:
    """Check a dataset against its manifest and config. Exit 0: all pass; 1: a check fails; 2: unreadable."""
    enable_compilation_cache()  # re-sampling runs the compiled block sampler: loaded while this imports
    from causalsynth.dataset.staging import check_output_file
    from causalsynth.validate.quality import as_json, validate_dataset

    if json_out is not None:
        check_output_file(json_out, "--json")
    if resample < 0:
        raise ConfigError(f"--resample: a number of blocks, 0 or more, got {resample}")
    checks = validate_dataset(dataset_dir, resample=resample)
    if json_out is not None:
        write_file(json_out, (json.dumps(as_json(checks), indent=2) + "\n").encode())
    print_checks(checks, f"validation of {dataset_dir}")
    raise typer.Exit(0 if all(c.passed for c in checks) else 1)
