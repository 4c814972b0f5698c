"""Authenticated and encrypted Kafka: SASL/SCRAM with ACLs, TLS, and secrets kept out of output.

Two dev brokers of their own (module-scoped): one with a SASL_PLAINTEXT listener, SCRAM
users and the StandardAuthorizer, one with a TLS listener and a throwaway CA.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from streamline.dev.broker import BrokerInfo, DevBroker, Security, free_port, make_certificates
from streamline.kafka.connection import Connection
from streamline.kafka.settings import read_kafka_config_file
from streamline.serde import AvroCodec, SchemaStore
from tests.helpers import read_all, run_cli
from tests.support.harness import (
    SCHEMAS,
    InputFeeder,
    StreamlineProcess,
    expectation,
    make_topology,
    order_stream,
    process_env,
)

ADMIN_PASSWORD = f"admin-pw-{uuid.uuid4().hex[:12]}"
APP_USER = "app"
APP_PASSWORD = f"app-pw-{uuid.uuid4().hex[:12]}"
WRONG_PASSWORD = f"wrong-pw-{uuid.uuid4().hex[:12]}"
PAID_ORDER = AvroCodec(SchemaStore(SCHEMAS), SchemaStore(SCHEMAS).get("com.example.PaidOrder"))
GRANT_HINT = (
    "an admin can grant it, or every ACL a topology needs with "
    f"'streamline acls TOPOLOGY --principal User:{APP_USER} --apply'"
)

TOPIC, GROUP, TXN = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
LITERAL, PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
READ, WRITE, DESCRIBE = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE


@dataclass
class Broker:
    info: BrokerInfo
    admin: Connection  # the broker's own client settings: the admin user, the CA

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.info.port}"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = DevBroker(tmp_path_factory.mktemp("sasl-broker"))
    security = Security(sasl=True, admin_password=ADMIN_PASSWORD, users=((APP_USER, APP_PASSWORD),))
    info = broker.start(free_port(), security=security)
    try:
        yield Broker(
            info, Connection(info.bootstrap, read_kafka_config_file(info.client_config_file))
        )
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = DevBroker(tmp_path_factory.mktemp("tls-broker"))
    info = broker.start(free_port(), security=Security(tls=True))
    try:
        yield Broker(
            info, Connection(info.bootstrap, read_kafka_config_file(info.client_config_file))
        )
    finally:
        broker.stop()


def client_env(address: str, **settings: str) -> dict[str, str]:
    """A `streamline` process's environment: the broker, the schemas, STREAMLINE_KAFKA_* settings."""
    env = process_env(Connection(address))
    for key, value in settings.items():
        env[f"STREAMLINE_KAFKA_{key.upper()}"] = value
    return env


def app_env(broker: Broker, password: str = APP_PASSWORD) -> dict[str, str]:
    return client_env(
        broker.address,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username=APP_USER,
        sasl_password=password,
    )


def documented_acls(name: str, source: str, sink: str, dlq: str) -> list[tuple]:  # type: ignore[type-arg]
    """The README's ACLs for a stateless exactly-once topology (no retry topic)."""
    return [
        (TOPIC, source, LITERAL, READ),
        (TOPIC, sink, LITERAL, WRITE),
        (TOPIC, dlq, LITERAL, WRITE),
        (TOPIC, "streamline.lineage", LITERAL, WRITE),
        (TOPIC, "streamline.heartbeats", LITERAL, WRITE),
        (GROUP, name, LITERAL, READ),
        (TXN, f"{name}-", PREFIXED, WRITE),
        (TXN, f"{name}-", PREFIXED, DESCRIBE),
    ]


def grant(admin: Connection, acls: list[tuple]) -> None:  # type: ignore[type-arg]
    """Creates ALLOW ACLs for the app user, as the admin, and waits until they apply."""
    if not acls:
        return
    bindings = [
        AclBinding(kind, name, pattern, f"User:{APP_USER}", "*", op, AclPermissionType.ALLOW)
        for kind, name, pattern, op in acls
    ]
    client = AdminClient(admin.config(log_level=0))
    for future in client.create_acls(bindings, request_timeout=30).values():
        future.result(30)


def wait_for_output(admin: Connection, sink: str, dlq: str, outputs: int, dead: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(read_all(admin, sink, timeout=5)) >= outputs and len(read_all(admin, dlq)) >= dead:
            return
        time.sleep(0.5)
    raise AssertionError(f"{sink} did not reach {outputs} records within 60s")


def run_orders(broker: Broker, env: dict[str, str], tmp_path: Path, unique: str) -> tuple[str, str]:
    """Runs the stateless test topology on 300 orders to completion as the client of `env`.

    Checks that the committed output and dead letters are exactly the expected ones;
    returns the process's log and a /metrics scrape taken while it ran.
    """
    path, source, sink, dlq = make_topology(tmp_path, broker.admin, unique, partitions=2)
    name = path.stem
    if broker.info.security.startswith("SASL"):
        grant(broker.admin, documented_acls(name, source, sink, dlq))
    stream = order_stream(300)
    expected = expectation(stream)
    feeder = InputFeeder(broker.admin, source, stream, rate=100_000)
    feeder.start()
    feeder.join(30)
    assert feeder.error is None
    proc = StreamlineProcess(path, "i1", env, tmp_path).start()
    port = proc.metrics_port
    try:
        wait_for_output(broker.admin, sink, dlq, len(expected.outputs), len(expected.dead_letters))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    finally:
        assert proc.stop(30) == 0, proc.log()[-3000:]
    values = [PAID_ORDER.decode(m.value()) for m in read_all(broker.admin, sink)]
    assert {v["order_id"]: v for v in values} == expected.outputs
    assert len(values) == len(expected.outputs)
    assert {m.value() for m in read_all(broker.admin, dlq)} == set(expected.dead_letters)
    assert 'streamline_records_in_total{partition="0"' in metrics
    return proc.log(), metrics


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


# --- SASL/SCRAM ----------------------------------------------------------------------------


def test_topology_runs_exactly_over_sasl_scram_with_the_documented_acls(
    sasl_broker: Broker, unique: str, tmp_path: Path
) -> None:
    env = app_env(sasl_broker)
    log, metrics = run_orders(sasl_broker, env, tmp_path, unique)
    validated = run_cli("validate", str(tmp_path / "topologies" / f"crash-{unique}.yaml"), env=env)
    assert validated.returncode == 0, validated.stderr
    for text in (log, metrics, validated.stdout + validated.stderr):
        assert APP_PASSWORD not in text
        assert ADMIN_PASSWORD not in text


def test_streamline_acls_prints_the_documented_acls(sasl_broker: Broker, tmp_path: Path) -> None:
    path, source, sink, dlq = make_topology(tmp_path, sasl_broker.admin, uuid.uuid4().hex[:10])
    name = path.stem
    listed = run_cli("acls", str(path), "--principal", f"User:{APP_USER}")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("#")[0].split() for line in listed.stdout.splitlines()]
    want = [
        ["ALLOW", f"User:{APP_USER}", kind.name, res, pattern.name, op.name]
        for kind, res, pattern, op in documented_acls(name, source, sink, dlq)
    ]
    assert rows == want


@pytest.mark.parametrize(
    "command",
    [
        ["run", "{topology}", "--metrics-port", "0"],
        ["produce", "{source}", "--schema", "com.example.Order", "--file", "examples/orders.jsonl"],
        ["consume", "{source}", "--from-beginning", "--timeout", "1"],
        ["topics", "create", "{topology}"],
    ],
    ids=["run", "produce", "consume", "topics-create"],
)
def test_wrong_password_fails_once_with_exit_1(
    sasl_broker: Broker, tmp_path: Path, command: list[str]
) -> None:
    path, source, _sink, _dlq = make_topology(tmp_path, sasl_broker.admin, uuid.uuid4().hex[:10])
    args = [a.format(topology=path, source=source) for a in command]
    started = time.monotonic()
    result = run_cli(*args, env=app_env(sasl_broker, WRONG_PASSWORD), timeout=60)
    assert time.monotonic() - started < 15
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: authentication failed for user '{APP_USER}' at {sasl_broker.address} "
        "(SASL/SCRAM-SHA-256): check sasl.username and sasl.password"
    ]
    assert WRONG_PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("missing", "needed"),
    [
        (
            "every ACL",
            "DESCRIBE on topic '{source}' (READ or WRITE on it imply DESCRIBE) "
            "(TOPIC_AUTHORIZATION_FAILED)",
        ),
        (
            "the transactional id",
            "WRITE and DESCRIBE on transactional id '{name}-i1' "
            "(TRANSACTIONAL_ID_AUTHORIZATION_FAILED)",
        ),
        ("the group", "READ on group '{name}' (GROUP_AUTHORIZATION_FAILED)"),
        ("WRITE on the sink", "WRITE on topic '{sink}' (TOPIC_AUTHORIZATION_FAILED)"),
    ],
)
def test_missing_acl_stops_the_run_naming_it(
    sasl_broker: Broker, unique: str, tmp_path: Path, missing: str, needed: str
) -> None:
    path, source, sink, dlq = make_topology(tmp_path, sasl_broker.admin, unique, partitions=1)
    name = path.stem
    acls = documented_acls(name, source, sink, dlq)
    if missing == "every ACL":
        acls = []
    elif missing == "the transactional id":
        acls = [a for a in acls if a[0] != TXN]
    elif missing == "the group":
        acls = [a for a in acls if a[0] != GROUP]
    else:  # the sink can be described (the run starts) but not written
        acls = [a if a[1] != sink else (TOPIC, sink, LITERAL, DESCRIBE) for a in acls]
    grant(sasl_broker.admin, acls)
    feeder = InputFeeder(sasl_broker.admin, source, order_stream(20), rate=100_000)
    feeder.start()
    feeder.join(30)
    proc = StreamlineProcess(path, "i1", app_env(sasl_broker), tmp_path, metrics_port=0).start()
    assert proc.proc is not None
    try:
        status = proc.proc.wait(30)
    finally:
        if proc.proc.poll() is None:
            proc.kill()
    log = proc.log()
    assert status == 1, log[-3000:]
    expected = needed.format(source=source, sink=sink, name=name)
    assert error_lines(log) == [
        f"error: not authorized: User:{APP_USER} needs {expected}; {GRANT_HINT}"
    ]
    assert "Traceback" not in log
    assert APP_PASSWORD not in log


# --- TLS -----------------------------------------------------------------------------------


def test_topology_runs_exactly_over_tls(tls_broker: Broker, unique: str, tmp_path: Path) -> None:
    ca = tls_broker.info.client["ssl.ca.location"]
    assert Path(ca).read_text().startswith("-----BEGIN CERTIFICATE-----")
    env = client_env(tls_broker.address, security_protocol="SSL", ssl_ca_location=ca)
    run_orders(tls_broker, env, tmp_path, unique)


@pytest.mark.parametrize("ca", ["none", "another CA"])
def test_untrusted_broker_certificate_fails_once_with_exit_1(
    tls_broker: Broker, tmp_path: Path, ca: str
) -> None:
    settings = {"security_protocol": "SSL"}
    hint = "(none is set)"
    if ca == "another CA":
        other = tmp_path / "other-ca.pem"
        other.write_bytes(make_certificates()[0])
        settings["ssl_ca_location"] = str(other)
        hint = f"({other} did not)"
    started = time.monotonic()
    result = run_cli(
        "consume", "orders", "--timeout", "1", env=client_env(tls_broker.address, **settings)
    )
    assert time.monotonic() - started < 15
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: TLS handshake with {tls_broker.address} failed: the broker's certificate is "
        "not trusted (certificate verify failed); set ssl.ca.location to the CA certificate "
        f"that signed it {hint}"
    ]


# --- the dev broker's command line ---------------------------------------------------------


def test_dev_broker_with_sasl_and_tls_prints_client_settings_but_not_the_password(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "broker"
    port = free_port()
    password = f"cli-pw-{uuid.uuid4().hex[:12]}"
    env = process_env(Connection("unused"))
    del env["STREAMLINE_BOOTSTRAP_SERVERS"]
    env["STREAMLINE_DEV_BROKER_PASSWORD"] = password
    started = run_cli(
        "dev-broker", "start", "--sasl", "--tls", "--port", str(port), "--data-dir", str(data_dir),
        env=env,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout == f"127.0.0.1:{port}\n"
        assert (
            "SASL_SSL listener; clients set security.protocol=SASL_SSL "
            "sasl.mechanism=SCRAM-SHA-256 sasl.username=admin sasl.password=*** "
            f"ssl.ca.location={data_dir / 'tls' / 'ca.pem'}; every setting, with the password: "
            f"--kafka-config {data_dir / 'client.properties'}"
        ) in started.stderr
        assert password not in started.stdout + started.stderr
        properties = data_dir / "client.properties"
        assert properties.stat().st_mode & 0o077 == 0
        assert read_kafka_config_file(properties)["sasl.password"] == password
        created = run_cli(
            "topics", "create", "topologies/paid-orders.yaml", "-b", f"127.0.0.1:{port}",
            "--kafka-config", str(properties), env=env,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        assert "created  orders [3 partitions]" in created.stdout
        plain = run_cli("dev-broker", "start", "--data-dir", str(data_dir), env=env)
        assert plain.returncode == 2
        assert "was set up for SASL_SSL clients, not PLAINTEXT" in plain.stderr
    finally:
        run_cli("dev-broker", "stop", "--data-dir", str(data_dir), env=env, timeout=60)
