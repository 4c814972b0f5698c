"""W0: the ceiling, a bare confluent-kafka consume → produce loop of the raw bytes.

Without `--transactional`: auto-committed offsets, an idempotent producer.
With it (EOS v2): a read_committed consumer and a transactional producer that
commits the consumed offsets with `send_offsets_to_transaction` every
`--commit-interval-ms` or `--max-records` records, whichever comes first.
"""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--transactional", action="store_true")
    parser.add_argument("--commit-interval-ms", type=int, default=100)
    parser.add_argument("--max-records", type=int, default=20_000)
    args = parser.parse_args()

    stop = False

    def handle(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)

    tx = args.transactional
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": not tx,
            "auto.commit.interval.ms": args.commit_interval_ms,
            "isolation.level": "read_committed" if tx else "read_uncommitted",
            "fetch.wait.max.ms": 50,
        }
    )
    producer_conf: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap,
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
    }
    if tx:
        producer_conf["transactional.id"] = f"{args.group}-0"
    producer = Producer(producer_conf)
    if tx:
        producer.init_transactions(60)
    consumer.subscribe([args.input])

    positions: dict[int, int] = {}
    pending = 0
    started = time.monotonic()
    if tx:
        producer.begin_transaction()

    def commit() -> None:
        nonlocal pending, started
        try:
            if positions:
                offsets = [TopicPartition(args.input, p, o) for p, o in positions.items()]
                producer.send_offsets_to_transaction(
                    offsets, consumer.consumer_group_metadata(), 30
                )
            producer.commit_transaction(30)
        except KafkaException as exc:
            if not exc.args[0].txn_requires_abort():
                raise
            # abort, and read again from the last committed offsets
            producer.abort_transaction(30)
            for tp in consumer.committed(consumer.assignment(), 30):
                offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
            positions.clear()
        producer.begin_transaction()
        pending = 0
        started = time.monotonic()

    output = args.output
    while not stop:
        messages: list[Message] = consumer.consume(1000, 0.1)
        for msg in messages:
            if msg.error():
                raise KafkaException(msg.error())
            while True:
                try:
                    producer.produce(output, msg.value(), msg.key())
                    break
                except BufferError:
                    producer.poll(0.05)
            if tx:
                positions[msg.partition() or 0] = (msg.offset() or 0) + 1
        producer.poll(0)
        pending += len(messages)
        if tx and (
            pending >= args.max_records
            or (time.monotonic() - started) * 1000 >= args.commit_interval_ms
        ):
            commit()
    if tx:
        commit()
        producer.abort_transaction(10)
    else:
        producer.flush(30)
    consumer.close()


if __name__ == "__main__":
    main()
