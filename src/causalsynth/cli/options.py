"""Options more than one command takes, spelled once; and turning their values into the library's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from causalsynth.cli.console import clear_errors
from causalsynth.errors import ConfigError

DATASET_HELP = "A dataset written by `causalsynth sample`: a directory or an fsspec URL (s3://bucket/prefix)."

Dataset = Annotated[str, typer.Argument(help=DATASET_HELP)]
ConfigFile = Annotated[Optional[Path], typer.Option("--config", help="YAML whose values replace the defaults.")]
Overrides = Annotated[Optional[list[str]], typer.Option("--set", help="Override one value: dotted.key=value "
                                                                       "(repeatable).")]
Force = Annotated[bool, typer.Option("--force", help="Replace a non-empty --out directory.")]
Do = Annotated[Optional[list[str]], typer.Option("--do", help="Intervene: SITE=VALUE, e.g. device_type=MOBILE "
                                                              "(repeatable).")]
Variant = Annotated[Optional[str], typer.Option("--variant", help="A shipped variant name or a variant YAML file.")]
Workers = Annotated[Optional[int], typer.Option("--workers", help="Sample on a local Dask cluster of this many "
                                                                  "worker processes.")]
Scheduler = Annotated[Optional[str], typer.Option("--scheduler", help="Sample on a running Dask cluster: its "
                                                                      "scheduler's address (tcp://host:8786).")]
BlocksAtOnce = Annotated[int, typer.Option("--blocks-at-once", min=1, max=256,
                                           help="Blocks the device samples in one call: more keep an "
                                                "accelerator busy (the same bytes on the CPU whatever it is).")]
Tasks = Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated tasks (default: all).")]


def _trust_model(path: Optional[Path]) -> Optional[Path]:
    if path is not None:
        from causalsynth.config import plugins

        with clear_errors():
            plugins.trust(path)
    return path


# Reading commands: a dataset's manifest names its model, but only a model the user names is imported.
Model = Annotated[Optional[Path], typer.Option(
    "--model", callback=_trust_model, help="The plug-in model (its .py file or package directory) the dataset "
    "was sampled from, where it is not a shipped one: a dataset never imports the code it names; this is "
    "loaded if its source is the one the manifest records.")]


def model_overrides(model, args: list[str]) -> list[str]:
    """``dotted.key=value`` overrides from ``args``, the options the command did not know itself:
    each must be one the model declares (its ``OPTIONS``)."""
    declared = {option.flag: option for option in model.OPTIONS}
    out, rest = [], list(args)
    while rest:
        token = rest.pop(0)
        flag, eq, value = token.partition("=")
        option = declared.get(flag)
        if option is None:
            raise ConfigError(f"{token}: not an option of sample, nor one its model {model.NAME} declares (its "
                              f"options: {', '.join(declared) or 'none'}; --set KEY=VALUE sets any config value)")
        if option.switch:
            if eq:
                raise ConfigError(f"{flag}: a switch, given alone, got {token!r}")
            value = "true"
        elif not eq:
            if not rest:
                raise ConfigError(f"{flag}: needs a value ({option.help.rstrip('.')})")
            value = rest.pop(0)
        out.append(f"{option.key}={value}")
    return out


def comma_list(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def intervention(variant: str | None, do: list[str] | None):
    """The intervention of ``--variant`` and ``--do`` together (``--do`` wins on a site both set)."""
    from causalsynth.engine.interventions import Intervention, load_variant, parse_assignments

    base = load_variant(variant) if variant else Intervention()
    assignments = parse_assignments(do or [], "--do")
    if assignments:
        base = base.merged(Intervention(name="do", do=assignments))
    return base


def enable_compilation_cache(samples: bool = True) -> None:
    """Reuse compiled samplers, traced structures, solved intercepts and the graph across processes.

    A command that ``samples`` here (not on a cluster's workers) calls this before its imports and
    its config: the block sampler this machine ran last is loaded meanwhile (``compiled.load_ahead``).
    """
    from causalsynth.engine import cache, compiled

    cache.enable()
    if samples:
        compiled.load_ahead("sampler")
