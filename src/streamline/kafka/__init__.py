"""Infrastructure for talking to Kafka: connection settings, secret redaction, access errors,
admin helpers and consumer construction.

Nothing here knows the CLI, the operations or the runtime; they all build on it.
"""
