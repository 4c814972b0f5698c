"""streamline: Kafka-native stream processing for Python.

Declare a topology (YAML or Python), and streamline consumes Avro events from
ingress topics, validates, filters, maps, keys and windows them, and writes
exactly-once results with lineage, freshness and recovery controls.
"""

__version__ = "0.1.0"
