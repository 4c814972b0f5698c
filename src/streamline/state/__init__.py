"""Local state: RocksDB stores per partition behind a transaction overlay, checkpoints."""

from streamline.state.checkpoint import Checkpoint
from streamline.state.store import PartitionStore, StoreOptions, partition_path

__all__ = ["WINDOW_STORE", "Checkpoint", "PartitionStore", "StoreOptions", "partition_path"]

WINDOW_STORE = "windows"
"""The store of a topology's window stage (changelog `<name>.windows.changelog`)."""
