"""The ``emorec`` typer app, its consoles and shared option helpers; ``config show``; ``main``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from emorec.errors import EmorecError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Emotion recognition from speech and face video.",
)
out = Console()
err = Console(stderr=True)
config_app = typer.Typer(no_args_is_help=True, help="Recipes: what a YAML file resolves to.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    recipe: Path = typer.Argument(..., help="a recipe YAML (its base: chain is followed)"),
    overrides: list[str] = typer.Option([], "--set", help="section.key=value, as train takes it"),
    against: Optional[Path] = typer.Option(None, help="print only what differs from this recipe"),
) -> None:
    """The recipe resolved: every setting training will use,
    its base: chain followed and defaults filled in."""
    import yaml

    from emorec.training.config import load_config
    from emorec.training.recipe_files import differences, recipe_chain

    config = load_config(recipe, overrides).to_dict()
    err.print(
        "recipe: " + " <- ".join(p.name for p in recipe_chain(recipe)),
        highlight=False,
        soft_wrap=True,
    )
    if against is None:
        out.print(
            yaml.safe_dump(config, sort_keys=False).rstrip(),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        return
    changed = differences(config, load_config(against).to_dict())
    for key, old, new in changed:
        out.print(f"{key}: {old!r} -> {new!r}", highlight=False, markup=False, soft_wrap=True)
    if not changed:
        out.print(f"{recipe.name} and {against.name} resolve to the same settings", highlight=False)


def _version(value: bool) -> None:
    if value:
        from emorec.version import __version__

        out.print(f"emorec {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Emotion recognition from speech and face video."""


def _hush_libraries() -> None:
    """``--quiet``: Lightning's info lines and tips, and libraries' deprecation notices, stay off
    the terminal (train.log still gets Lightning's lines: only the terminal handlers are raised).

    Lightning gives its loggers a terminal handler on import unless the root logger has one (then
    they pass their lines up, and the ``lightning`` package logger prints them at INFO). So the
    root gets a handler at WARNING and Lightning's loggers their own terminal handler at WARNING,
    not passing lines up, before it loads: it stays quiet without being imported (seconds) in a
    command that never trains."""
    import logging
    import warnings

    def terminal() -> logging.Handler:
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        return handler

    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(terminal())
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        streams = [h for h in logger.handlers if type(h) is logging.StreamHandler]
        for handler in streams:  # Lightning already imported: raise the handler it added
            handler.setLevel(logging.WARNING)
        if not streams:
            logger.addHandler(terminal())
        logger.propagate = False
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)


def _options(pairs: list[str]) -> dict:
    import yaml

    parsed = {}
    for pair in pairs:
        if "=" not in pair:
            raise EmorecError(f"option {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        parsed[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return parsed


def main() -> None:
    try:
        app()
    except EmorecError as error:
        err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
