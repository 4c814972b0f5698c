"""`streamline dlq list/show/replay` against the real broker."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from streamline.kafka.connection import Connection
from streamline.reliability.dead_letter import Failure, failure_headers
from streamline.serde import AvroCodec, SchemaStore
from tests.helpers import json_lines, read_all, run_cli
from tests.support.dlq_maps import FAIL_FILE
from tests.support.harness import (
    SCHEMAS,
    StreamlineProcess,
    duplicates,
    expectation,
    make_topology,
    order_stream,
    process_env,
)
from tests.support.maps import RATES

ORDER = AvroCodec(SchemaStore(SCHEMAS), SchemaStore(SCHEMAS).get("com.example.Order"))
PAID_ORDER = AvroCodec(SchemaStore(SCHEMAS), SchemaStore(SCHEMAS).get("com.example.PaidOrder"))
FAILED_AT = 1767225600000
MAP_STAGE = "stages[2].map"
VALIDATE_STAGE = "stages[0].validate"

# what the runtime would have written for one topology: (failure, value is Avro)
FAILURES = [
    (Failure("decode", "not single-object Avro", "decode"), False),
    (Failure("validation", "amount > 0.0 is false", VALIDATE_STAGE, rule="amount_positive"), True),
    (Failure("map", "cannot convert o-2-boom", MAP_STAGE, attempts=3), True),
    (Failure("schema", "unknown fingerprint", "decode"), False),
    (Failure("validation", "amount > 0.0 is false", VALIDATE_STAGE, rule="amount_positive"), True),
    (Failure("map", "cannot convert o-5-boom", MAP_STAGE, attempts=3), True),
    (Failure("decode", "not single-object Avro", "decode"), False),
    (
        Failure("validation", "currency in [...] is false", VALIDATE_STAGE, rule="known_currency"),
        True,
    ),
    (Failure("map", "cannot convert o-8-boom", MAP_STAGE, attempts=3), True),
    (Failure("validation", "amount > 0.0 is false", VALIDATE_STAGE, rule="amount_positive"), True),
    (Failure("map", "cannot convert o-10-boom", MAP_STAGE, attempts=3), True),
]


@dataclass
class Letter:
    """One dead letter the fixture wrote, and where it landed."""

    key: bytes
    value: bytes
    failure: Failure
    source_partition: int
    source_offset: int
    failed_at: int
    own_header: bytes
    position: tuple[int, int] = (-1, -1)


@dataclass
class DeadLetters:
    topology: Path
    source: str
    dlq: str
    letters: list[Letter]

    def of_type(self, error_type: str) -> list[Letter]:
        return [d for d in self.letters if d.failure.error_type == error_type]


def order(i: int) -> dict[str, Any]:
    return {
        "order_id": f"o-{i}",
        "customer_id": f"c-{i}",
        "amount": 10.0 + i,
        "currency": "EUR",
        "status": "PAID",
        "country": "DE",
        "created_at": FAILED_AT + i,
    }


@pytest.fixture
def dead_letters(
    kafka: Connection, unique: str, tmp_path: Path, bootstrap_env: dict[str, str]
) -> DeadLetters:
    """A topology whose dead-letter topic holds FAILURES as the runtime writes them: in
    transactions, with one aborted transaction that must never show."""
    topology, source, _sink, dlq = make_topology(tmp_path, kafka, unique)
    letters = [
        Letter(
            key=f"c-{i}".encode(),
            value=ORDER.encode(order(i)) if avro else f"garbage-{i}".encode(),
            failure=failure,
            source_partition=i % 3,
            source_offset=100 + i,
            failed_at=FAILED_AT + i * 1000,
            own_header=f"trace-{i}".encode(),
        )
        for i, (failure, avro) in enumerate(FAILURES)
    ]
    producer = Producer(kafka.config(**{"transactional.id": f"dlq-test-{unique}"}))
    producer.init_transactions(30)

    def write(batch: list[Letter], commit: bool) -> None:
        producer.begin_transaction()
        for n, letter in enumerate(batch):

            def delivered(err: Any, msg: Any, letter: Letter = letter) -> None:
                assert err is None, err
                letter.position = (msg.partition(), msg.offset())

            headers = failure_headers(
                letter.failure,
                source,
                letter.source_partition,
                letter.source_offset,
                [("trace", letter.own_header)],
                now_ms=letter.failed_at,
            )
            producer.produce(
                dlq,
                key=letter.key,
                value=letter.value,
                headers=headers,
                partition=n % 3,
                on_delivery=delivered,
            )
        producer.flush(30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    write(letters[:6], commit=True)
    aborted = Letter(
        b"c-x", ORDER.encode(order(99)), FAILURES[2][0], 0, 999, FAILED_AT + 99_000, b"x"
    )
    write([aborted], commit=False)
    write(letters[6:], commit=True)
    return DeadLetters(topology, source, dlq, letters)


def table_rows(text: str) -> list[list[str]]:
    """The cells of each row of a rich table."""
    return [
        [cell.strip() for cell in line.strip().strip("│┃").split("│")]
        for line in text.splitlines()
        if line.strip().startswith("│")
    ]


def replay(*args: str) -> Any:
    result = run_cli("dlq", "replay", *args)
    assert result.returncode == 0, result.stderr
    return result


# --- list and show --------------------------------------------------------------------------


def test_list_counts_committed_dead_letters_by_type_stage_and_rule(
    dead_letters: DeadLetters,
) -> None:
    result = run_cli("dlq", "list", str(dead_letters.topology))
    assert result.returncode == 0, result.stderr
    assert f"{dead_letters.dlq}: 11 dead letters" in result.stdout
    assert table_rows(result.stdout) == [
        ["map", MAP_STAGE, "", "4"],
        ["validation", VALIDATE_STAGE, "amount_positive", "3"],
        ["decode", "decode", "", "2"],
        ["schema", "decode", "", "1"],
        ["validation", VALIDATE_STAGE, "known_currency", "1"],
        ["total", "", "", "11"],
    ]


def test_list_says_so_when_there_are_no_dead_letters(
    kafka: Connection, unique: str, tmp_path: Path, bootstrap_env: dict[str, str]
) -> None:
    topology, *_ = make_topology(tmp_path, kafka, unique)
    result = run_cli("dlq", "list", str(topology))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"no dead letters in crash-{unique}.dlq"


def test_show_prints_the_newest_dead_letters_decoded(dead_letters: DeadLetters) -> None:
    result = run_cli("dlq", "show", str(dead_letters.topology), "--limit", "3")
    assert result.returncode == 0, result.stderr
    shown = json_lines(result.stdout)
    newest = dead_letters.letters[-3:]
    assert [(s["partition"], s["offset"]) for s in shown] == [d.position for d in newest]
    for line, letter in zip(shown, newest, strict=True):
        assert line["source"] == {
            "topic": dead_letters.source,
            "partition": letter.source_partition,
            "offset": letter.source_offset,
        }
        assert line["error"] == {
            "type": letter.failure.error_type,
            "stage": letter.failure.stage,
            "rule": letter.failure.rule,
            "message": letter.failure.message,
        }
        assert line["attempts"] == letter.failure.attempts
        assert line["failed_at"] == letter.failed_at
        assert line["key"] == letter.key.decode()
        assert line["schema"] == "com.example.Order"
        assert line["value"] == ORDER.decode(letter.value)


def test_show_prints_undecodable_values_as_base64_with_a_note(dead_letters: DeadLetters) -> None:
    result = run_cli("dlq", "show", str(dead_letters.topology), "--limit", "20")
    assert result.returncode == 0, result.stderr
    shown = json_lines(result.stdout)
    assert len(shown) == 11
    garbage = [s for s in shown if s["error"]["type"] in ("decode", "schema")]
    assert len(garbage) == 3
    assert all("value_base64" in s and s["note"].startswith("not decoded") for s in garbage)


# --- replay ---------------------------------------------------------------------------------


def test_dry_run_sends_nothing_and_remembers_nothing(
    dead_letters: DeadLetters, kafka: Connection
) -> None:
    result = replay(str(dead_letters.topology), "--error-type", "map", "--dry-run")
    assert f"would replay 4 dead letters to {dead_letters.source} (map 4)" in result.stdout
    sample = json_lines(
        "\n".join(line for line in result.stdout.splitlines() if line.startswith("{"))
    )
    assert sorted(s["from"] for s in sample) == sorted(
        f"{dead_letters.dlq}/{p}/{o}" for p, o in (d.position for d in dead_letters.of_type("map"))
    )
    assert read_all(kafka, dead_letters.source, timeout=5) == []

    again = replay(str(dead_letters.topology), "--error-type", "map", "--dry-run")
    assert "would replay 4 dead letters" in again.stdout


def test_replay_reproduces_the_chosen_dead_letters_with_original_bytes_and_replay_headers(
    dead_letters: DeadLetters, kafka: Connection
) -> None:
    before = int(time.time() * 1000)
    result = replay(str(dead_letters.topology), "--error-type", "map")
    assert f"replayed 4 dead letters to {dead_letters.source} (map 4)" in result.stdout
    assert "left 7 of other error types (decode 2, schema 1, validation 4)" in result.stdout

    replayed = read_all(kafka, dead_letters.source, expected=4)
    assert len(replayed) == 4
    by_value = {m.value(): m for m in replayed}
    for letter in dead_letters.of_type("map"):
        msg = by_value[letter.value]
        assert msg.key() == letter.key
        assert msg.partition() == letter.source_partition
        headers = dict(msg.headers() or [])
        p, o = letter.position
        assert headers["streamline.replay.from"] == f"{dead_letters.dlq}/{p}/{o}".encode()
        assert before <= int(headers["streamline.replay.at"] or 0) <= int(time.time() * 1000)
        assert headers["streamline.error.type"] == b"map"
        assert headers["trace"] == letter.own_header
        assert "streamline.error.message" not in headers


def test_a_second_replay_sends_nothing_new(dead_letters: DeadLetters, kafka: Connection) -> None:
    replay(str(dead_letters.topology), "--error-type", "map")
    second = replay(str(dead_letters.topology), "--error-type", "map")
    assert "replayed 0 dead letters" in second.stdout
    group = dead_letters.dlq.removesuffix(".dlq") + ".dlq-replay"
    assert (
        f"skipped 4 already replayed (map 4) per the offsets of consumer groups {group}, "
        f"{group}.map"
    ) in second.stdout
    assert len(read_all(kafka, dead_letters.source, timeout=5)) == 4


def test_replaying_every_type_after_one_type_sends_only_the_rest(
    dead_letters: DeadLetters, kafka: Connection
) -> None:
    replay(str(dead_letters.topology), "--error-type", "map")
    everything = replay(str(dead_letters.topology))
    assert "replayed 7 dead letters" in everything.stdout
    assert "skipped 4 already replayed (map 4)" in everything.stdout
    again = replay(str(dead_letters.topology))
    assert "replayed 0 dead letters" in again.stdout
    assert "skipped 11 already replayed" in again.stdout
    values = [m.value() or b"" for m in read_all(kafka, dead_letters.source, expected=11)]
    assert sorted(values) == sorted(d.value for d in dead_letters.letters)


# --- errors ---------------------------------------------------------------------------------


def test_a_missing_dead_letter_topic_exits_1_naming_it(
    dead_letters: DeadLetters, tmp_path: Path
) -> None:
    path = tmp_path / "topologies" / "other.yaml"
    path.write_text(
        dead_letters.topology.read_text().replace(
            "sink:", f"dead_letter_topic: nowhere-{dead_letters.source}\nsink:"
        )
    )
    for command in ("list", "show", "replay"):
        result = run_cli("dlq", command, str(path))
        assert result.returncode == 1, result.stderr
        assert f"topic nowhere-{dead_letters.source} does not exist" in result.stderr
        assert "Traceback" not in result.stderr


def test_an_invalid_topology_exits_2(tmp_path: Path, bootstrap_env: dict[str, str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: streamline/v1\nname: bad\n")
    result = run_cli("dlq", "list", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


# --- end to end -----------------------------------------------------------------------------


def wait_for_counts(
    connection: Connection, want: dict[str, int], proc: StreamlineProcess, timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    have: dict[str, int] = {}
    while time.monotonic() < deadline:
        have = {t: len(read_all(connection, t, timeout=5)) for t in want}
        if have == want:
            return
        time.sleep(0.5)
    raise AssertionError(f"have {have}, want {want} after {timeout}s\n{proc.log()[-3000:]}")


@pytest.mark.slow
def test_fixed_map_failures_replayed_come_out_exactly_once(
    kafka: Connection, unique: str, tmp_path: Path, bootstrap_env: dict[str, str]
) -> None:
    topology, source, sink, dlq = make_topology(tmp_path, kafka, unique)
    topology.write_text(
        topology.read_text().replace(
            "tests.support.maps:to_eur_or_fail", "tests.support.dlq_maps:to_eur_while_flagged"
        )
    )
    stream = order_stream(300)
    expected = expectation(stream)
    boom = {r["order_id"]: r for _k, _v, category, _rule, r in stream if category == "map" and r}
    assert len(boom) >= 3
    producer = Producer(kafka.config(**{"enable.idempotence": True}))
    for key, value, *_ in stream:
        producer.produce(source, key=key, value=value)
    assert producer.flush(30) == 0

    flag = tmp_path / "map-is-broken"
    flag.touch()
    env = process_env(kafka) | {FAIL_FILE: str(flag)}
    proc = StreamlineProcess(topology, "a", env, tmp_path).start()
    try:
        wait_for_counts(kafka, {sink: len(expected.outputs), dlq: len(expected.dead_letters)}, proc)
    finally:
        stopped = proc.stop()
    assert stopped == 0, proc.log()[-3000:]

    listed = run_cli("dlq", "list", str(topology), env=env)
    assert ["map", MAP_STAGE, "", str(len(boom))] in table_rows(listed.stdout), listed.stdout

    flag.unlink()
    replayed = replay(str(topology), "--error-type", "map")
    assert f"replayed {len(boom)} dead letters to {source} (map {len(boom)})" in replayed.stdout

    proc.start()
    try:
        wait_for_counts(
            kafka, {sink: len(expected.outputs) + len(boom), dlq: len(expected.dead_letters)}, proc
        )
    finally:
        stopped = proc.stop()
    assert stopped == 0, proc.log()[-3000:]

    values = [PAID_ORDER.decode(m.value()) for m in read_all(kafka, sink)]
    ids = [v["order_id"] for v in values]
    assert duplicates(ids) == []
    assert set(ids) == set(expected.outputs) | set(boom)
    for order_id, record in boom.items():
        [out] = [v for v in values if v["order_id"] == order_id]
        assert out["amount_eur"] == record["amount"] * RATES[record["currency"]]
    assert "replayed 0 dead letters" in replay(str(topology), "--error-type", "map").stdout
