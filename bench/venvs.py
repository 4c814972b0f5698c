"""The peers' virtual environments under bench/.venvs/<peer>, from PyPI, created once.

Each peer pins its own dependencies (Quix Streams and Bytewax their confluent-kafka,
faust aiokafka), so none of them is installed into streamline's environment.
`python -m bench.venvs` creates the missing ones (`make bench-setup`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VENVS = Path(__file__).resolve().parent / ".venvs"

REQUIREMENTS: dict[str, list[str]] = {
    "quix": ["quixstreams>=3.0,<4", "fastavro>=1.9"],
    "faust": ["faust-streaming>=0.11", "aiokafka[lz4]", "rocksdict>=0.3.23", "fastavro>=1.9"],
    # Bytewax 0.21 ships wheels for CPython 3.8-3.12 (the machine's python3 is 3.11)
    "bytewax": ["bytewax[kafka]==0.21.1", "fastavro>=1.9"],
}


def ensure(peer: str) -> Path:
    """The peer's python, installing its venv when missing or its requirements changed."""
    venv = VENVS / peer
    python = venv / "bin" / "python"
    marker = venv / ".requirements"
    wanted = "\n".join(REQUIREMENTS[peer])
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS[peer]], check=True
    )
    marker.write_text(wanted)
    return python


def version(peer: str, package: str) -> str:
    python = VENVS / peer / "bin" / "python"
    result = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "?"


def main() -> None:
    for peer in REQUIREMENTS:
        print(f"{peer}: {ensure(peer)}")


if __name__ == "__main__":
    main()
