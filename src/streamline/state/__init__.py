"""Local state: RocksDB stores per partition behind a transaction overlay, checkpoints."""

from streamline.state.checkpoint import Checkpoint
from streamline.state.store import PartitionStore, StoreOptions, partition_path
from streamline.topology.resources import WINDOW_STORE

__all__ = ["WINDOW_STORE", "Checkpoint", "PartitionStore", "StoreOptions", "partition_path"]
