"""MkDocs hook: the reference pages, generated from the code at every build.

- ``reference/cli.md``: every command and option, from the Typer app (Typer's own
  Markdown generator, as ``typer causalsynth.cli utils docs`` uses);
- ``reference/api.md``: the public names of ``causalsynth`` (its ``__all__``), each
  documented from its docstring by mkdocstrings, and the primitives a model uses;
- ``reference/data-dictionary.md``: every table and column of the shipped model, with
  its type, levels and meaning, from the model's trace and its ``DESCRIPTIONS``.
"""

from __future__ import annotations

from mkdocs.structure.files import File


def cli_reference() -> str:
    import click
    import typer.main
    from typer.cli import get_docs_for_click

    from causalsynth.cli import app

    command = typer.main.get_command(app)
    return get_docs_for_click(obj=command, ctx=click.Context(command, info_name="causalsynth"),
                              name="causalsynth", title="CLI reference")


def api_reference() -> str:
    import causalsynth

    lines = ["# Python API", "",
             "The public names of `causalsynth`: everything else is internal and may change. "
             "`import causalsynth` is fast: each name loads its module on first use.", ""]
    for name in sorted(causalsynth.__all__, key=str.lower):
        lines += [f"::: {causalsynth._EXPORTS[name]}.{name}", ""]
    lines += ["## For model authors", "",
              "What a model program imports (see [Writing a model](../guides/models.md)).", "",
              "::: causalsynth.spec.modeling", "    options:", "      show_root_heading: false", "",
              "::: causalsynth.config.plugins", "    options:", "      show_root_heading: false",
              "      members: [REQUIRED, OPTIONAL]", ""]
    return "\n".join(lines)


def data_dictionary() -> str:
    from causalsynth.config.loading import load_config
    from causalsynth.engine.program import Program
    from causalsynth.sinks import table_specs

    program = Program(load_config())
    model = program.model
    levels = {(layout.table.name, c.name): c.levels for layout in program.tables for c in layout.columns}
    lines = ["# Data dictionary", "",
             f"The tables of the shipped model, `{model.NAME}` {model.VERSION}, with the default config "
             "(`--series` adds `service_timeseries`; `--latents` adds the hidden causes). Generated from the "
             "model's trace; every dataset's `manifest.json` holds the same for its own config.", ""]
    for spec in table_specs(program):
        parent = f"; each row belongs to one `{spec.parent[0]}` row (`{spec.parent[1]}`)" if spec.parent else ""
        lines += [f"## {spec.name}", "", f"Key `{spec.key}`{parent}.", "",
                  "| column | type | meaning |", "| --- | --- | --- |"]
        for field in spec.schema:
            kind = str(field.type)
            if levels.get((spec.name, field.name)):
                kind = "category: " + ", ".join(f"`{v}`" for v in levels[spec.name, field.name])
            lines.append(f"| `{field.name}` | {kind} | {spec.descriptions.get(field.name, '')} |")
        lines.append("")
    return "\n".join(lines)


PAGES = {"reference/cli.md": cli_reference, "reference/api.md": api_reference,
         "reference/data-dictionary.md": data_dictionary}


def on_files(files, config):
    for uri, render in PAGES.items():
        files.append(File.generated(config, uri, content=render()))
    return files
