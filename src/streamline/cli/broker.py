"""`streamline dev-broker start|stop|status`: the local single-node broker."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamline.cli.console import err
from streamline.cli.options import DataDirOpt
from streamline.errors import UsageError

broker_app = typer.Typer(help="The local single-node Apache Kafka broker (KRaft, loopback).")


@broker_app.command("start")
def broker_start(
    port: Annotated[
        int | None,
        typer.Option(
            help="Listener port (default 9092, or STREAMLINE_DEV_BROKER_PORT). Without it, "
            "a streamline dev broker of another folder on the default port is reused, and a "
            "port taken by anything else is replaced by a free one."
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    sasl: Annotated[
        bool,
        typer.Option(
            "--sasl", help="SASL/SCRAM-SHA-256 (and -512) listener, ACLs on, an admin super user."
        ),
    ] = False,
    tls: Annotated[
        bool,
        typer.Option("--tls", help="TLS listener with a throwaway CA (with --sasl: SASL_SSL)."),
    ] = False,
    admin_user: Annotated[
        str,
        typer.Option(
            "--admin-user", envvar="STREAMLINE_DEV_BROKER_USER", help="The SASL super user."
        ),
    ] = "admin",
    admin_password: Annotated[
        str | None,
        typer.Option(
            "--admin-password",
            envvar="STREAMLINE_DEV_BROKER_PASSWORD",
            help="Its password (default: random, kept in DATA_DIR/client.properties).",
        ),
    ] = None,
    users: Annotated[
        list[str] | None,
        typer.Option(
            "--user", help="A further SCRAM user without ACLs, NAME:PASSWORD (repeatable)."
        ),
    ] = None,
) -> None:
    """Start the broker in the background (or reuse the running one) and print its address."""
    from streamline.dev.broker import DevBroker, Security

    extra: list[tuple[str, str]] = []
    for user in users or []:
        name, colon, password = user.partition(":")
        if not (name and colon and password):
            raise UsageError(f"--user {name or user}: expected NAME:PASSWORD")
        extra.append((name, password))
    if extra and not sasl:
        raise UsageError("--user needs --sasl")
    security = Security(sasl, tls, admin_user, admin_password, tuple(extra))
    broker = DevBroker(data_dir)
    already = broker.info()
    if already is None:
        err.print(f"starting Apache Kafka (KRaft) from {broker.data_dir} ...")
    info = broker.start(port, security=security)
    if broker.note:
        err.print(broker.note, markup=False)
    if Path(info.data_dir) != broker.data_dir:  # another checkout's broker, reused
        err.print(
            f"dev broker of {info.data_dir}; logs in {info.data_dir}/server.log", markup=False
        )
    else:
        note = "already running" if already else f"started (pid {info.pid})"
        err.print(f"dev broker {note}; logs in {broker.log_file}", markup=False)
    if info.client:
        shown: dict[str, str] = {}
        for key, value in info.client.items():
            shown[key] = value
            if key == "sasl.username":  # the password itself is only in client.properties
                shown["sasl.password"] = "***"
        err.print(
            f"{info.security} listener; clients set "
            + " ".join(f"{k}={v}" for k, v in shown.items())
            + f"; every setting, with the password: --kafka-config {info.client_config_file}",
            markup=False,
        )
    print(info.bootstrap)


@broker_app.command("stop")
def broker_stop(data_dir: DataDirOpt = None) -> None:
    """Stop the broker gracefully (killed after 30 s)."""
    from streamline.dev.broker import DevBroker

    stopped = DevBroker(data_dir).stop()
    print("dev broker stopped" if stopped else "no dev broker running")


@broker_app.command("status")
def broker_status(data_dir: DataDirOpt = None) -> None:
    """Say whether the broker runs and where; exit status 1 when it does not."""
    from streamline.dev.broker import DevBroker

    broker = DevBroker(data_dir)
    info = broker.info()
    if info is None:
        print(f"no dev broker running from {broker.data_dir}")
        raise typer.Exit(1)
    print(
        f"dev broker running at {info.bootstrap} (pid {info.pid}, data {info.data_dir}, "
        f"{info.security})"
    )
