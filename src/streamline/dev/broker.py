"""The local single-node Apache Kafka broker (KRaft, combined broker + controller) on loopback.

Its jars come from Maven Central through `kafka/pom.xml`; storage is formatted with
`kafka.tools.StorageTool` on first start and the broker runs as `kafka.Kafka` in the
background. A `broker.json` file in the data folder records where it listens, so a
second start, `status` and the CLI's address lookup find the running broker.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

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


class BrokerError(StreamlineError):
    """The dev broker could not be started or stopped."""


@dataclass
class BrokerInfo:
    """Where a dev broker listens and which process it is."""

    pid: int
    port: int
    controller_port: int
    data_dir: str

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child has exited for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevBroker:
    """One dev broker, identified by its data folder."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = (data_dir or default_data_dir()).resolve()
        self.info_file = self.data_dir / "broker.json"
        self.log_file = self.data_dir / "server.log"

    def info(self) -> BrokerInfo | None:
        """The running broker of this folder, or None."""
        try:
            info = BrokerInfo(**json.loads(self.info_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if _pid_alive(info.pid) and port_open(info.port):
            return info
        return None

    def start(self, port: int | None = None, timeout: float = START_TIMEOUT_S) -> BrokerInfo:
        """Starts the broker unless it runs already; returns once it answers metadata requests."""
        running = self.info()
        if running is not None:
            if port is not None and port != running.port:
                raise UsageError(
                    f"a dev broker already runs from {self.data_dir} on port {running.port}; "
                    f"stop it first or use another --data-dir"
                )
            return running
        _require_tool("java", "a Java 17+ runtime (e.g. apt-get install openjdk-17-jre-headless)")
        libs = find_kafka_libs()
        previous = self._previous_ports()
        port = port or (previous[0] if previous else DEFAULT_PORT)
        controller_port = previous[1] if previous else free_port()
        for p in (port, controller_port):
            if port_open(p):
                raise BrokerError(
                    f"port {p} on 127.0.0.1 is taken by another process; choose another with --port"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self._write_config(port, controller_port)
        classpath = f"{libs}/*"
        java = [
            "java",
            HEAP,
            "-Xms128m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._write_log_config()}",
        ]
        if not (self.data_dir / "data" / "meta.properties").exists():
            self._format(java, classpath, props)
        with open(self.data_dir / "stdout.log", "ab") as out:
            proc = subprocess.Popen(
                [*java, "-cp", classpath, "kafka.Kafka", str(props)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        info = BrokerInfo(proc.pid, port, controller_port, str(self.data_dir))
        self.info_file.write_text(json.dumps(asdict(info)))
        self._await_ready(proc, info, timeout)
        return info

    def _previous_ports(self) -> tuple[int, int] | None:
        """The ports this folder's storage was formatted with (the controller port is part of it)."""
        try:
            data = json.loads(self.info_file.read_text())
            return int(data["port"]), int(data["controller_port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_config(self, port: int, controller_port: int) -> Path:
        settings = dict(BROKER_SETTINGS)
        settings.update(
            {
                "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
                "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
                "log.dirs": str(self.data_dir / "data"),
            }
        )
        props = self.data_dir / "server.properties"
        props.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        return props

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

    def _format(self, java: list[str], classpath: str, props: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
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
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BrokerError(f"formatting the broker storage failed:\n{done.stdout}{done.stderr}")

    def _await_ready(self, proc: subprocess.Popen[bytes], info: BrokerInfo, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"the broker exited with status {proc.returncode} during start; "
                    f"see {self.log_file} and {self.data_dir / 'stdout.log'}"
                )
            if port_open(info.port):
                admin = AdminClient({"bootstrap.servers": info.bootstrap, "log_level": 0})
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
        if not _pid_alive(info.pid):
            return False
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(info.pid):
                return True
            time.sleep(0.1)
        os.kill(info.pid, signal.SIGKILL)
        return True


def running_dev_broker() -> BrokerInfo | None:
    """The dev broker of the default data folder, if it runs."""
    return DevBroker().info()
