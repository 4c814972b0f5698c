"""The local development broker: a single-node Apache Kafka (KRaft) on loopback, optionally with
SASL/SCRAM, ACLs and TLS, that `streamline dev-broker` starts and stops and every command
finds when no broker address is given.
"""
