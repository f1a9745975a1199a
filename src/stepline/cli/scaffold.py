"""Getting started: ``pipeline init`` (a new pipeline from the starter or an example) and
``pipeline schema`` (the config's JSON Schema, for editors and CI checks).

Both import the spec models only when they run, so ``pipeline --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stepline.cli.options import DebugOption, JsonOption, print_json


def schema_command(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write the schema to FILE instead of stdout."
        ),
    ] = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Print the JSON Schema of the pipeline config file (for editors and CI checks).

    The schema is JSON already; ``--json`` changes only what ``-o`` prints (``{"written"}``).
    """
    from stepline.spec.schema import schema_text

    text = schema_text()
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        from stepline.errors import InputError

        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None
    if as_json:
        print_json({"written": str(output)})
    else:
        typer.echo(f"Wrote {output}")


def init_command(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIRECTORY",
            help="Folder to create the pipeline in (default: here).",
            show_default=False,
        ),
    ] = Path("."),
    example: Annotated[
        str | None,
        typer.Option(
            "--example",
            metavar="NAME",
            help="Copy this shipped example (see --list) instead of the starter; its config is "
            "written as pipeline-config.yaml.",
        ),
    ] = None,
    list_examples: Annotated[
        bool, typer.Option("--list", help="List the shipped examples and exit.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Create a working pipeline: config, prompt, helpers, schema, input and a cassette."""
    from stepline import scaffold
    from stepline.spec.schema import schema_text

    if list_examples:
        names = scaffold.example_names()
        if as_json:
            print_json({"examples": names})
        else:
            typer.echo("\n".join(names) or "No examples in this installation.")
        return
    if example is None:
        plan = scaffold.starter_scaffold(schema_text())
    else:
        plan = scaffold.example_scaffold(example, schema_text())
    written = scaffold.write_scaffold(plan, directory, force=force)
    steps = [f"cd {directory}"] if directory.resolve() != Path.cwd().resolve() else []
    steps += scaffold.how_to_run(plan)
    if as_json:
        files = [str(path) for path in sorted(plan.files)]
        print_json({"directory": str(directory), "files": files, "next": steps})
        return
    typer.echo(f"Created {len(written)} files in {directory}:")
    for path in sorted(plan.files):
        typer.echo(f"  {path}")
    typer.echo("\nNext:")
    for command in steps:
        typer.echo(f"  {command}")
