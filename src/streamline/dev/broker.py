"""The local single-node Apache Kafka broker (KRaft, combined broker + controller) on loopback.

Its jars come from Maven Central through `kafka/pom.xml`; storage is formatted with
`kafka.tools.StorageTool` on first start and the broker runs as `kafka.Kafka` in the
background. A `broker.json` file in the data folder records where it listens, so a
second start, `status` and the CLI's address lookup find the running broker.

With `Security(sasl=True)` the client listener speaks SASL (SCRAM-SHA-256/512, users
created at format time) and the StandardAuthorizer checks ACLs, with the admin user as
the only super user; the broker talks to itself as that admin, and to its controller
over a loopback SASL/PLAIN listener, so no listener lets an unauthenticated client in.
With `Security(tls=True)` the client listener speaks TLS with a throwaway CA and broker
certificate (`tls/ca.pem`, `tls/broker.pem`). `client.properties` (mode 0600) holds
every setting a client needs, the password included; `broker.json` records the same
settings without the password.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streamline.dev.process import pid_alive, stop_process
from streamline.errors import StreamlineError, UsageError

DEFAULT_PORT = 9092
HEAP = "-Xmx512m"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

# Settings for a single node: replication 1, no auto-created topics, fast group joins,
# and small buffers so the broker fits beside the processor on a small machine.
BROKER_SETTINGS = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "10",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "10",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
    "auto.create.topics.enable": "false",
    "num.network.threads": "2",
    "num.io.threads": "4",
    "log.cleaner.dedupe.buffer.size": "16777216",
    "log.cleaner.backoff.ms": "1000",
}


SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
DEFAULT_ADMIN_USER = "admin"
# user names and passwords go into StorageTool arguments and JAAS lines unquoted
CREDENTIAL_PATTERN = re.compile(r"[A-Za-z0-9._~@+-]+")


def new_cluster_id() -> str:
    """A random KRaft cluster id (a base64url UUID) that does not start with `-`.

    One in 64 would, and the storage tool then reads it as an option ("argument
    --cluster-id/-t: expected one argument"); Kafka's own generator skips those too.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class BrokerError(StreamlineError):
    """The dev broker could not be started or stopped."""


@dataclass(frozen=True)
class Security:
    """How the dev broker's client listener is secured: SASL/SCRAM with ACLs, TLS, both, neither.

    `admin_password` None means: the one this data folder was formatted with, or a new
    random one. `users` are further SCRAM users (name, password) without any ACLs.
    """

    sasl: bool = False
    tls: bool = False
    admin_user: str = DEFAULT_ADMIN_USER
    admin_password: str | None = None
    users: tuple[tuple[str, str], ...] = ()

    @property
    def protocol(self) -> str:
        if self.sasl:
            return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
        return "SSL" if self.tls else "PLAINTEXT"


@dataclass
class BrokerInfo:
    """Where a dev broker listens, which process it is, and what its clients must set.

    `client` holds the client settings without secrets; with SASL the password is only in
    `client.properties` of the data folder.
    """

    pid: int
    port: int
    controller_port: int
    data_dir: str
    security: str = "PLAINTEXT"
    client: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def client_config_file(self) -> Path:
        """`key=value` client settings, the password included (for `--kafka-config`)."""
        return Path(self.data_dir) / CLIENT_PROPERTIES


CLIENT_PROPERTIES = "client.properties"


def default_port() -> int:
    """`$STREAMLINE_DEV_BROKER_PORT`, else 9092: the port a new dev broker listens on."""
    env = os.environ.get("STREAMLINE_DEV_BROKER_PORT")
    return int(env) if env and env.isdigit() else DEFAULT_PORT


def dev_broker_on(port: int) -> BrokerInfo | None:
    """The running streamline dev broker, of any data folder, that serves 127.0.0.1:`port`.

    Found from the command lines of this machine's processes (Linux `/proc`): a dev broker
    runs `kafka.Kafka DATA_DIR/server.properties`, and its folder's `broker.json` says
    which port it serves. None elsewhere, or when no such broker serves the port.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kafka.Kafka" not in args or not args[-2:]:
            continue
        props = Path(os.fsdecode(next((a for a in reversed(args) if a), b"")))
        if props.name != "server.properties":
            continue
        info = DevBroker(props.parent).info()
        if info is not None and info.port == port and info.pid == int(entry.name):
            return info
    return None


def default_data_dir() -> Path:
    """`$STREAMLINE_HOME/broker`, else `./.streamline/broker`."""
    home = os.environ.get("STREAMLINE_HOME")
    return (Path(home) if home else Path.cwd() / ".streamline") / "broker"


def find_kafka_libs() -> Path:
    """The folder with the resolved Kafka jars, resolving them with Maven if needed."""
    env = os.environ.get("STREAMLINE_KAFKA_LIBS")
    if env:
        libs = Path(env)
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"STREAMLINE_KAFKA_LIBS={libs} holds no kafka_2.13 jar")
        return libs
    candidates = [Path.cwd() / "kafka", Path(__file__).resolve().parents[3] / "kafka"]
    for kafka_dir in candidates:
        libs = kafka_dir / "libs"
        if any(libs.glob("kafka_2.13-*.jar")):
            return libs
    for kafka_dir in candidates:
        if (kafka_dir / "pom.xml").is_file():
            _require_tool("mvn", "Maven (e.g. apt-get install maven) to resolve the Kafka jars")
            print(f"resolving the Apache Kafka jars into {kafka_dir / 'libs'} ...", file=sys.stderr)
            done = subprocess.run(
                [
                    "mvn",
                    "-q",
                    "-B",
                    "-f",
                    str(kafka_dir / "pom.xml"),
                    "dependency:copy-dependencies",
                ],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise BrokerError(f"mvn could not resolve the Kafka jars:\n{done.stdout[-2000:]}")
            return kafka_dir / "libs"
    raise BrokerError(
        "no Kafka jars found: run 'make setup' in the streamline checkout, or set "
        "STREAMLINE_KAFKA_LIBS to a folder of Kafka 4.x jars"
    )


def _require_tool(name: str, what: str) -> None:
    if shutil.which(name) is None:
        raise BrokerError(
            f"{name} not found: install {what}; or use an existing Kafka cluster by setting "
            "STREAMLINE_BOOTSTRAP_SERVERS, or run 'docker compose up' with the bundled "
            "docker-compose.yml"
        )


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


PICKED_PORTS = (20000, 32768)
"""Where `free_port` picks: below the kernel's ephemeral range (Linux: 32768-60999)."""


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return PICKED_PORTS[1]


def free_port() -> int:
    """A port nothing listens on, for a server that binds it a moment later (a JVM).

    Picked at random below the ephemeral range and checked free: the kernel hands out
    ephemeral ports to every `bind(0)` and outgoing connection of every process, so one
    found free that way can be taken before the server binds it; these ports only by
    another such pick. A server that can bind port 0 itself and say which it got races
    with nothing: prefer that where possible.
    """
    low, high = PICKED_PORTS[0], min(PICKED_PORTS[1], _ephemeral_low())
    rng = random.SystemRandom()
    for _ in range(100 if high > low else 0):
        port = rng.randrange(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not port_open(port, timeout=0.2):  # nothing listens on another address either
            return port
    with socket.socket() as s:  # no room below the ephemeral range
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevBroker:
    """One dev broker, identified by its data folder."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = (data_dir or default_data_dir()).resolve()
        self.info_file = self.data_dir / "broker.json"
        self.log_file = self.data_dir / "server.log"
        self.note: str | None = None
        """What `start` did besides starting this folder's broker (reused another, moved port)."""

    def info(self) -> BrokerInfo | None:
        """The running broker of this folder, or None."""
        try:
            info = BrokerInfo(**json.loads(self.info_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if pid_alive(info.pid) and port_open(info.port):
            return info
        return None

    def start(
        self,
        port: int | None = None,
        timeout: float = START_TIMEOUT_S,
        security: Security | None = None,
    ) -> BrokerInfo:
        """Starts the broker unless it runs already; returns once it answers metadata requests."""
        security = security or Security()
        running = self.info()
        if running is not None:
            if port is not None and port != running.port:
                raise UsageError(
                    f"a dev broker already runs from {self.data_dir} on port {running.port}; "
                    f"stop it first or use another --data-dir"
                )
            self._require_same_security(running.security, security)
            return running
        _require_tool("java", "a Java 17+ runtime (e.g. apt-get install openjdk-17-jre-headless)")
        libs = find_kafka_libs()
        previous = self._previous()
        formatted = (self.data_dir / "data" / "meta.properties").exists()
        if formatted:
            self._require_same_security(previous.security if previous else "PLAINTEXT", security)
        chosen = port is not None
        port = port or (previous.port if previous else default_port())
        controller_port = previous.controller_port if previous else free_port()
        if port_open(port):
            other = dev_broker_on(port)
            if other is not None and not chosen and other.security == security.protocol:
                self.note = f"reusing the dev broker of {other.data_dir} on 127.0.0.1:{port}"
                return other
            taken = f"the streamline dev broker of {other.data_dir}" if other else "another process"
            if chosen:
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is taken by {taken}; choose another with --port"
                )
            self.note = f"port {port} is taken by {taken}; chose a free port"
            port = free_port()
        if port_open(controller_port):
            raise BrokerError(
                f"controller port {controller_port} on 127.0.0.1 (kept in {self.data_dir}) is "
                "taken by another process; free it, or use another --data-dir"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password = self._admin_password(security, formatted)
        client = self._client_settings(security, password)
        props = self._write_config(port, controller_port, security, password)
        classpath = f"{libs}/*"
        java = [
            "java",
            HEAP,
            "-Xms128m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._write_log_config()}",
        ]
        if not formatted:
            self._format(java, classpath, props, security, password)
        with open(self.data_dir / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                [*java, "-cp", classpath, "kafka.Kafka", str(props)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        public = {k: v for k, v in client.items() if k != "sasl.password"}
        info = BrokerInfo(
            proc.pid, port, controller_port, str(self.data_dir), security.protocol, public
        )
        self.info_file.write_text(json.dumps(asdict(info)))
        self._await_ready(proc, info, client, timeout)
        return info

    def _previous(self) -> BrokerInfo | None:
        """What this folder's storage was formatted with (the controller port is part of it)."""
        try:
            data = json.loads(self.info_file.read_text())
            return BrokerInfo(**data)
        except (OSError, ValueError, TypeError):
            return None

    def _require_same_security(self, formatted: str, wanted: Security) -> None:
        if formatted != wanted.protocol:
            raise UsageError(
                f"the dev broker in {self.data_dir} was set up for {formatted} clients, not "
                f"{wanted.protocol}; use another --data-dir for a broker with other security"
            )

    def _admin_password(self, security: Security, formatted: bool) -> str | None:
        """The SCRAM password of the admin user: the formatted one, the given one, or a new one."""
        if not security.sasl:
            return None
        for name, password in [(security.admin_user, security.admin_password), *security.users]:
            for value in (name, password):
                if value is not None and not CREDENTIAL_PATTERN.fullmatch(value):
                    raise UsageError(
                        "dev broker user names and passwords may hold letters, digits and "
                        "'._~@+-' only"
                    )
        stored = self._stored_client_settings() if formatted else {}
        if stored:
            if stored.get("sasl.username") != security.admin_user or (
                security.admin_password is not None
                and stored.get("sasl.password") != security.admin_password
            ):
                raise UsageError(
                    f"the dev broker in {self.data_dir} was formatted with other admin "
                    "credentials (they are in its client.properties); use another --data-dir "
                    "for new ones"
                )
            return stored.get("sasl.password")
        return security.admin_password or secrets.token_urlsafe(18)

    def _stored_client_settings(self) -> dict[str, str]:
        from streamline.kafka.settings import read_kafka_config_file

        path = self.data_dir / CLIENT_PROPERTIES
        return read_kafka_config_file(path) if path.is_file() else {}

    def _client_settings(self, security: Security, password: str | None) -> dict[str, str]:
        """What a client sets to reach the broker as the admin user; written to client.properties."""
        client: dict[str, str] = {}
        if security.protocol != "PLAINTEXT":
            client["security.protocol"] = security.protocol
        if security.sasl:
            assert password is not None
            client["sasl.mechanism"] = SCRAM_MECHANISMS[0]
            client["sasl.username"] = security.admin_user
            client["sasl.password"] = password
        if security.tls:
            client["ssl.ca.location"] = str(self._tls_files()[0])
        path = self.data_dir / CLIENT_PROPERTIES
        if client:
            path.touch(mode=0o600)
            path.chmod(0o600)
            path.write_text("".join(f"{k}={v}\n" for k, v in client.items()))
        else:
            path.unlink(missing_ok=True)
        return client

    def _tls_files(self) -> tuple[Path, Path]:
        """The CA certificate and the broker's key and certificate chain, made on first use."""
        folder = self.data_dir / "tls"
        ca_file, broker_file = folder / "ca.pem", folder / "broker.pem"
        if not (ca_file.is_file() and broker_file.is_file()):
            folder.mkdir(parents=True, exist_ok=True)
            ca_pem, key_pem, cert_pem = make_certificates()
            broker_file.touch(mode=0o600)
            broker_file.write_bytes(key_pem + cert_pem + ca_pem)
            ca_file.write_bytes(ca_pem)
        return ca_file, broker_file

    def _write_config(
        self, port: int, controller_port: int, security: Security, password: str | None
    ) -> Path:
        settings = dict(BROKER_SETTINGS)
        settings.update(
            {
                "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
                "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
                "log.dirs": str(self.data_dir / "data"),
            }
        )
        if security.protocol != "PLAINTEXT":
            settings.update(self._security_settings(port, controller_port, security, password))
        props = self.data_dir / "server.properties"
        props.touch(mode=0o600)
        props.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        return props

    def _security_settings(
        self, port: int, controller_port: int, security: Security, password: str | None
    ) -> dict[str, str]:
        """The client listener named after its protocol, which the broker also uses itself."""
        name = security.protocol
        controller = "SASL_PLAINTEXT" if security.sasl else "PLAINTEXT"
        settings = {
            "listeners": f"{name}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"{name}://127.0.0.1:{port}",
            "inter.broker.listener.name": name,
            "listener.security.protocol.map": f"CONTROLLER:{controller},{name}:{name}",
        }
        if security.sasl:
            user = security.admin_user
            scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
            plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
            listener = f"listener.name.{name.lower()}"
            for mechanism in SCRAM_MECHANISMS:  # every enabled mechanism needs its login module
                settings[f"{listener}.{mechanism.lower()}.sasl.jaas.config"] = (
                    f'{scram} required username="{user}" password="{password}";'
                )
            settings.update(
                {
                    "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
                    "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISMS[0],
                    # SCRAM credentials live in the metadata the controller serves, so the
                    # controller listener authenticates the broker with PLAIN instead
                    "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
                    "sasl.mechanism.controller.protocol": "PLAIN",
                    "listener.name.controller.plain.sasl.jaas.config": (
                        f'{plain} required username="{user}" password="{password}" '
                        f'user_{user}="{password}";'
                    ),
                    "authorizer.class.name": AUTHORIZER,
                    "super.users": f"User:{user}",
                }
            )
        if security.tls:
            ca_file, broker_file = self._tls_files()
            settings.update(
                {
                    "ssl.keystore.type": "PEM",
                    "ssl.keystore.location": str(broker_file),
                    "ssl.truststore.type": "PEM",
                    "ssl.truststore.location": str(ca_file),
                    "ssl.client.auth": "none",
                }
            )
        return settings

    def _write_log_config(self) -> Path:
        path = self.data_dir / "log4j2.properties"
        path.write_text(
            "status = warn\n"
            "appender.file.type = RollingFile\n"
            "appender.file.name = file\n"
            f"appender.file.fileName = {self.log_file}\n"
            f"appender.file.filePattern = {self.log_file}.%i\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "appender.file.policies.type = Policies\n"
            "appender.file.policies.size.type = SizeBasedTriggeringPolicy\n"
            "appender.file.policies.size.size = 20MB\n"
            "appender.file.strategy.type = DefaultRolloverStrategy\n"
            "appender.file.strategy.max = 2\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = file\n"
            "logger.kafka.name = kafka\n"
            "logger.kafka.level = WARN\n"
            "logger.kafkaserver.name = kafka.server.KafkaRaftServer\n"
            "logger.kafkaserver.level = INFO\n"
            "logger.apache.name = org.apache.kafka\n"
            "logger.apache.level = WARN\n"
        )
        return path

    def _format(
        self,
        java: list[str],
        classpath: str,
        props: Path,
        security: Security,
        password: str | None,
    ) -> None:
        cluster_id = new_cluster_id()
        scram: list[str] = []
        if security.sasl:
            for name, secret in [(security.admin_user, password), *security.users]:
                for mechanism in SCRAM_MECHANISMS:
                    scram += ["--add-scram", f"{mechanism}=[name={name},password={secret}]"]
        done = subprocess.run(
            [
                *java,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(props),
                *scram,
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            output = f"{done.stdout}{done.stderr}"
            for secret in [password, *(p for _name, p in security.users)]:
                if secret:
                    output = output.replace(secret, "***")
            raise BrokerError(f"formatting the broker storage failed:\n{output}")

    def _await_ready(
        self,
        proc: subprocess.Popen[bytes],
        info: BrokerInfo,
        client: dict[str, str],
        timeout: float,
    ) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"the broker exited with status {proc.returncode} during start; "
                    f"see {self.log_file} and {self.data_dir / 'stdout.log'}"
                )
            if port_open(info.port):
                admin = AdminClient({"bootstrap.servers": info.bootstrap, "log_level": 0, **client})
                try:
                    if admin.list_topics(timeout=2).brokers:
                        return
                except Exception:
                    pass
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"the broker did not serve within {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stops the broker gracefully (SIGTERM), killing it after `timeout`; False if none ran."""
        try:
            info = BrokerInfo(**json.loads(self.info_file.read_text()))
        except (OSError, ValueError, TypeError):
            return False
        return stop_process(info.pid, timeout)


def make_certificates() -> tuple[bytes, bytes, bytes]:
    """A throwaway CA and a broker certificate for 127.0.0.1 and localhost it signed, valid a year.

    Returns (CA certificate, broker private key as unencrypted PKCS#8, broker certificate),
    all PEM; the CA's own key is not kept.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streamline dev-broker CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca_cert.public_bytes(pem), key_pem, cert.public_bytes(pem)


def running_dev_broker() -> BrokerInfo | None:
    """The dev broker of the default data folder, if it runs; else a streamline dev broker of
    another folder on the default port, the one `dev-broker start` reuses."""
    return DevBroker().info() or dev_broker_on(default_port())
