"""Sinks that are not Kafka topics; `files`: the exactly-once file sink and its two-phase commit."""
