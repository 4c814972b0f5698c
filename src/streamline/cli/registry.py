"""`streamline dev-registry start|stop|status`: the local Schema Registry (Apicurio, in memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamline.cli.console import err

registry_app = typer.Typer(
    help="The local Schema Registry (Apicurio Registry, in-memory, Confluent-compatible API)."
)
RegistryDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Its pid file and log (default .streamline/registry)."),
]


@registry_app.command("start")
def registry_start(
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8081).")] = None,
    data_dir: RegistryDirOpt = None,
) -> None:
    """Start the registry in the background (or reuse the running one) and print its URL."""
    from streamline.dev.registry import DevRegistry

    registry = DevRegistry(data_dir)
    already = registry.info()
    if already is None:
        err.print("starting Apicurio Registry (in-memory) ...")
    info = registry.start(port)
    note = "already running" if already else f"started (pid {info.pid})"
    err.print(f"dev registry {note}; logs in {registry.log_file}")
    print(info.url)


@registry_app.command("stop")
def registry_stop(data_dir: RegistryDirOpt = None) -> None:
    """Stop the registry (its schemas are kept in memory only: they go with it)."""
    from streamline.dev.registry import DevRegistry

    stopped = DevRegistry(data_dir).stop()
    print("dev registry stopped" if stopped else "no dev registry running")


@registry_app.command("status")
def registry_status(data_dir: RegistryDirOpt = None) -> None:
    """Say whether the registry runs and where; exit status 1 when it does not."""
    from streamline.dev.registry import DevRegistry

    registry = DevRegistry(data_dir)
    info = registry.info()
    if info is None:
        print(f"no dev registry running from {registry.data_dir}")
        raise typer.Exit(1)
    print(f"dev registry running at {info.url} (pid {info.pid})")
