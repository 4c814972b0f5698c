"""`streamline acls`: the ACLs a principal needs to run a topology."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamline.cli.console import out
from streamline.cli.options import BootstrapOpt, KafkaConfigOpt, SchemasOpt, connect, load_checked
from streamline.cli.render import acl_lines
from streamline.errors import UsageError


def acls(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    principal: Annotated[
        str, typer.Option("--principal", help="Who runs the topology, e.g. User:orders-app.")
    ],
    apply: Annotated[
        bool, typer.Option("--apply", help="Create them (as a user allowed to ALTER the cluster).")
    ] = False,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """The ACLs a principal needs to run a topology; --apply creates them."""
    from streamline.ops.acls import create_acls, topology_acls

    if ":" not in principal:
        raise UsageError(f"--principal {principal}: expected TYPE:NAME, e.g. User:orders-app")
    checked, _ = load_checked(topology, schemas)
    wanted = topology_acls(checked.topology)
    for line in acl_lines(wanted, principal):
        out.print(line, markup=False)
    if apply:
        from dataclasses import asdict

        from streamline.ops.audit import AuditLog

        connection = connect(bootstrap_servers, kafka_config)
        connection.check_reachable()
        model = checked.topology
        audit = AuditLog(connection)
        plan = {"principal": principal, "acls": [asdict(a) for a in wanted]}
        try:
            create_acls(connection, wanted, principal)
        except Exception as exc:
            audit.record("acls-apply", model.name, checked.fingerprint, plan, "failed", str(exc))
            raise
        audit.record("acls-apply", model.name, checked.fingerprint, plan, "applied", None)
        out.print(f"created {len(wanted)} ACLs for {principal}", markup=False)
