"""Secrets stay out of messages and logs; refused logins and denied operations read clearly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from streamline.errors import AuthenticationError, AuthorizationError
from streamline.kafka.connection import Connection
from streamline.kafka.redaction import RedactingFilter, is_secret, redact
from streamline.ops.acls import topology_acls
from streamline.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "127.0.0.1:9093"


def sasl_connection(password: str = "s3cret-value") -> Connection:
    return Connection(
        ADDRESS,
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "orders-app",
            "sasl.password": password,
            "ssl.ca.location": "/etc/kafka/ca.pem",
        },
    )


@pytest.mark.parametrize(
    "setting",
    [
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.truststore.password",
        "ssl.key.pem",
        "sasl.jaas.config",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.assertion.private.key.pem",
        "some.future.secret.setting",
    ],
)
def test_secret_settings_are_recognised(setting: str) -> None:
    assert is_secret(setting)


@pytest.mark.parametrize(
    "setting",
    [
        "bootstrap.servers",
        "security.protocol",
        "sasl.mechanism",
        "sasl.username",
        "ssl.ca.location",
        "ssl.keystore.location",
    ],
)
def test_plain_settings_are_shown(setting: str) -> None:
    assert not is_secret(setting)


def test_redacted_settings_mask_the_password_and_keep_the_rest() -> None:
    assert sasl_connection().redacted() == {
        "bootstrap.servers": ADDRESS,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "orders-app",
        "sasl.password": "***",
        "ssl.ca.location": "/etc/kafka/ca.pem",
    }


def test_a_known_secret_is_masked_wherever_it_appears_in_a_text() -> None:
    sasl_connection("pw-in-an-error-7f3a")
    text = 'Invalid value "pw-in-an-error-7f3a" for configuration property "x"'
    assert redact(text) == 'Invalid value "***" for configuration property "x"'


def test_log_records_are_masked_by_the_filter() -> None:
    sasl_connection("pw-in-a-log-line-91c2")
    record = logging.LogRecord(
        "streamline", logging.WARNING, __file__, 1, "consumer: %s", ("pw-in-a-log-line-91c2",), None
    )
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "consumer: ***"


def test_refused_credentials_name_the_user_the_address_and_the_mechanism() -> None:
    error = KafkaError(
        KafkaError._AUTHENTICATION,
        f"sasl_ssl://{ADDRESS}/bootstrap: SASL authentication error: Authentication failed "
        "during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 "
        "(after 12ms in state AUTH_REQ)",
    )
    refused = sasl_connection().access_error(error)
    assert isinstance(refused, AuthenticationError)
    assert str(refused) == (
        f"authentication failed for user 'orders-app' at {ADDRESS} (SASL/SCRAM-SHA-512): "
        "check sasl.username and sasl.password"
    )


def test_an_untrusted_certificate_names_the_ca_setting() -> None:
    error = KafkaError(
        KafkaError._SSL,
        f"ssl://{ADDRESS}/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
        "certificate verify failed: broker certificate could not be verified",
    )
    refused = sasl_connection().access_error(error)
    assert isinstance(refused, AuthenticationError)
    assert str(refused) == (
        f"TLS handshake with {ADDRESS} failed: the broker's certificate is not trusted "
        "(certificate verify failed); set ssl.ca.location to the CA certificate that signed "
        "it (/etc/kafka/ca.pem did not)"
    )


@pytest.mark.parametrize(
    ("code", "context", "needed"),
    [
        (
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            {"topic": "orders", "operation": "READ"},
            "READ on topic 'orders' (TOPIC_AUTHORIZATION_FAILED)",
        ),
        (
            KafkaError.GROUP_AUTHORIZATION_FAILED,
            {"group": "paid-orders"},
            "READ on group 'paid-orders' (GROUP_AUTHORIZATION_FAILED)",
        ),
        (
            KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            {"transactional_id": "paid-orders-host-1"},
            "WRITE and DESCRIBE on transactional id 'paid-orders-host-1' "
            "(TRANSACTIONAL_ID_AUTHORIZATION_FAILED)",
        ),
    ],
)
def test_a_denied_operation_names_the_acl_to_grant(
    code: int, context: dict[str, str], needed: str
) -> None:
    denied = sasl_connection().access_error(KafkaError(code), **context)
    assert isinstance(denied, AuthorizationError)
    assert str(denied) == (
        f"not authorized: User:orders-app needs {needed}; an admin can grant it, or every "
        "ACL a topology needs with 'streamline acls TOPOLOGY --principal User:orders-app --apply'"
    )


def test_other_errors_are_not_access_errors() -> None:
    assert sasl_connection().access_error(KafkaError(KafkaError._TRANSPORT)) is None


def test_a_windowed_topology_needs_its_owned_topics_group_and_transactional_ids() -> None:
    topology = load_topology(ROOT / "topologies" / "revenue-per-minute.yaml")
    acls = [(a.resource, a.name, a.pattern, a.operation) for a in topology_acls(topology)]
    name = "revenue-per-minute"
    assert acls == [
        ("TOPIC", "orders", "LITERAL", "READ"),
        ("TOPIC", name, "LITERAL", "WRITE"),
        ("TOPIC", f"{name}.dlq", "LITERAL", "WRITE"),
        ("TOPIC", f"{name}.late", "LITERAL", "WRITE"),
        ("TOPIC", f"{name}.repartition", "LITERAL", "READ"),
        ("TOPIC", f"{name}.repartition", "LITERAL", "WRITE"),
        ("TOPIC", f"{name}.windows.changelog", "LITERAL", "READ"),
        ("TOPIC", f"{name}.windows.changelog", "LITERAL", "WRITE"),
        ("TOPIC", f"{name}.windows.changelog", "LITERAL", "DELETE"),
        ("TOPIC", "streamline.lineage", "LITERAL", "WRITE"),
        ("TOPIC", "streamline.heartbeats", "LITERAL", "WRITE"),
        ("GROUP", name, "LITERAL", "READ"),
        ("GROUP", "streamline-restore-", "PREFIXED", "DESCRIBE"),
        ("TRANSACTIONAL_ID", f"{name}-", "PREFIXED", "WRITE"),
        ("TRANSACTIONAL_ID", f"{name}-", "PREFIXED", "DESCRIBE"),
    ]
