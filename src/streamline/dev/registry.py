"""The local Schema Registry: Apicurio Registry with in-memory storage, on a loopback port.

Its Quarkus application is unpacked from Maven Central by `make setup` (`registry/pom.xml`,
into `registry/target/apicurio`) when a Java 21+ JDK is found. Clients use its
Confluent-compatible API, `http://127.0.0.1:<port>/apis/ccompat/v7`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from streamline.dev.broker import free_port, port_open
from streamline.dev.process import pid_alive, stop_process
from streamline.errors import StreamlineError

DEFAULT_PORT = 8081
CCOMPAT_PATH = "/apis/ccompat/v7"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
MIN_JAVA = 21
HEAP = "-Xmx512m"


class RegistryError(StreamlineError):
    """The dev registry cannot be prepared, started or reached."""


@dataclass(frozen=True)
class RegistryInfo:
    pid: int
    port: int

    @property
    def url(self) -> str:
        """The URL clients use (the Confluent-compatible API)."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"


def _java_version(java_home: Path) -> int | None:
    try:
        text = (java_home / "release").read_text()
    except OSError:
        return None
    found = re.search(r'JAVA_VERSION="(\d+)', text)
    return int(found.group(1)) if found else None


def find_java21() -> Path | None:
    """The `java` of a Java 21+ JDK: STREAMLINE_JAVA21_HOME, JAVA_HOME, or one in /usr/lib/jvm."""
    homes = [os.environ.get("STREAMLINE_JAVA21_HOME"), os.environ.get("JAVA_HOME")]
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        homes += [str(p) for p in sorted(jvm.iterdir(), reverse=True)]
    for home in homes:
        if not home:
            continue
        version = _java_version(Path(home))
        java = Path(home) / "bin" / "java"
        if version is not None and version >= MIN_JAVA and java.is_file():
            return java
    return None


def find_registry_app() -> Path | None:
    """`quarkus-run.jar` of the unpacked registry (STREAMLINE_REGISTRY_HOME, else registry/target)."""
    env = os.environ.get("STREAMLINE_REGISTRY_HOME")
    candidates = [Path(env)] if env else []
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidates.append(root / "registry" / "target" / "apicurio")
    for home in candidates:
        jar = home / "quarkus-run.jar"
        if jar.is_file():
            return jar
    return None


def prepare_registry() -> Path:
    """The registry's jar, unpacking it with Maven (registry/pom.xml) if needed."""
    jar = find_registry_app()
    if jar is not None:
        return jar
    pom = Path(__file__).resolve().parents[3] / "registry" / "pom.xml"
    if not pom.is_file() or shutil.which("mvn") is None:
        raise RegistryError(
            "the dev registry is not prepared: run 'make setup' (it needs Maven and a Java 21+ "
            "JDK), or set STREAMLINE_REGISTRY_HOME to an unpacked Apicurio Registry"
        )
    done = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(pom), "package"], capture_output=True, text=True
    )
    jar = find_registry_app()
    if done.returncode != 0 or jar is None:
        raise RegistryError(f"mvn could not prepare the registry:\n{done.stdout[-2000:]}")
    return jar


def default_data_dir() -> Path:
    home = os.environ.get("STREAMLINE_HOME")
    return (Path(home) if home else Path.cwd() / ".streamline") / "registry"


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether the registry's Confluent-compatible API answers (a readiness probe)."""
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class DevRegistry:
    """One dev registry, identified by its folder (pid, port and log)."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = (data_dir or default_data_dir()).resolve()
        self.info_file = self.data_dir / "registry.json"
        self.log_file = self.data_dir / "registry.log"

    def info(self) -> RegistryInfo | None:
        try:
            info = RegistryInfo(**json.loads(self.info_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if pid_alive(info.pid) and port_open(info.port):
            return info
        return None

    def start(self, port: int | None = None, timeout: float = START_TIMEOUT_S) -> RegistryInfo:
        """Starts the registry in the background (or returns the running one) and waits for it."""
        running = self.info()
        if running is not None:
            return running
        java = find_java21()
        if java is None:
            raise RegistryError(
                f"the dev registry needs a Java {MIN_JAVA}+ JDK: none found in "
                "STREAMLINE_JAVA21_HOME, JAVA_HOME or /usr/lib/jvm"
            )
        jar = prepare_registry()
        port = port or (DEFAULT_PORT if not port_open(DEFAULT_PORT) else free_port())
        if port_open(port):
            raise RegistryError(f"port {port} is taken: give another with --port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(java),
            HEAP,
            f"-Dquarkus.http.port={port}",
            "-Dquarkus.http.host=127.0.0.1",
            # its management interface (health, metrics) on loopback, on a port of its own
            "-Dquarkus.management.host=127.0.0.1",
            f"-Dquarkus.management.port={free_port()}",
            "-Dquarkus.log.level=WARN",
            "-Dapicurio.storage.kind=sql",
            "-Dapicurio.storage.sql.kind=h2",  # H2 in memory: nothing kept across restarts
            "-jar",
            str(jar),
        ]
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
                start_new_session=True,
            )
        info = RegistryInfo(pid=proc.pid, port=port)
        self.info_file.write_text(json.dumps(asdict(info)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RegistryError(
                    f"the registry exited with status {proc.returncode} during start; "
                    f"see {self.log_file}"
                )
            if answers(info.url):
                return info
            time.sleep(0.3)
        self.stop()
        raise RegistryError(
            f"the registry did not answer within {timeout:.0f}s; see {self.log_file}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stops the registry (SIGTERM, then SIGKILL after `timeout`); False if none ran."""
        try:
            info = RegistryInfo(**json.loads(self.info_file.read_text()))
        except (OSError, ValueError, TypeError):
            return False
        return stop_process(info.pid, timeout)
