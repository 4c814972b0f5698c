"""Whether an argument list, as a manifest writes it, is a real `streamline` command line."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.testing import CliRunner

from streamline.cli import app


def subcommand(args: list[str]) -> tuple[Any, list[str]]:
    """The `streamline` subcommand `args` (after `streamline`) names, and the arguments after it."""
    command: Any = typer.main.get_command(app)
    while isinstance(command, TyperGroup):
        assert args, "no subcommand given"
        name, args = args[0], args[1:]
        assert name in command.commands, f"streamline has no command {name!r}"
        command = command.commands[name]
    return command, args


def assert_streamline_invocation(args: list[str]) -> None:
    """Every option exists on the subcommand, each gets a value, the positionals are complete,
    and the CLI itself accepts the line (run with --help appended, so nothing executes)."""
    command, rest = subcommand(args)
    options = {o: p for p in command.params if isinstance(p, TyperOption) for o in p.opts}
    positional = 0
    tokens = iter(rest)
    for token in tokens:
        if token.startswith("-"):
            assert token in options, f"streamline {command.name} has no option {token}"
            if not options[token].is_flag:
                value = next(tokens, None)
                assert value is not None and not value.startswith("--"), f"{token} has no value"
        else:
            positional += 1
    arguments = [p for p in command.params if isinstance(p, TyperArgument)]
    assert positional == len(arguments), f"{positional} arguments for {len(arguments)}: {rest}"
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output


def option(args: list[str], name: str) -> str:
    """The value given to option `name` (exactly once) in `args`."""
    assert args.count(name) == 1, f"{name} given {args.count(name)} times in {args}"
    return str(args[args.index(name) + 1])
