"""Does Kafka 4's consumer group protocol (KIP-848) keep partition n of two topics together?

Two consumers subscribe to two topics of 6 partitions with `group.protocol=consumer`
and a server-side assignor, then a third one joins. Every assignment and revocation
callback is printed with the time and whether each member then held the same partition
numbers of both topics (`OK`) or not (`SPLIT`), which the window tasks need (partition n
of the source and of the retry topic on one instance).

    python -m bench.group_protocol [range|uniform]

In our trials (Kafka 4.x, librdkafka 2.16): `range` kept them together, the moved
partitions arriving one or two heartbeat intervals (5 s each, a broker setting) after the
third member joined; `uniform`, the broker's default, split them.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]


def main() -> None:
    assignor = sys.argv[1] if len(sys.argv) > 1 else "range"
    bootstrap = os.environ.get("STREAMLINE_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    unique = uuid.uuid4().hex[:6]
    x, y = f"kip848-x-{unique}", f"kip848-y-{unique}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(x, 6, 1), NewTopic(y, 6, 1)]).values():
        future.result()
    time.sleep(2)
    held: dict[str, set[tuple[str, int]]] = {}
    lines: list[str] = []
    stop = threading.Event()

    def report(name: str, what: str, partitions: list[TopicPartition]) -> None:
        xs = {p for t, p in held[name] if t == x}
        ys = {p for t, p in held[name] if t == y}
        moved = sorted(("x" if tp.topic == x else "y") + str(tp.partition) for tp in partitions)
        state = "OK" if xs == ys else f"SPLIT x={sorted(xs)} y={sorted(ys)}"
        lines.append(f"{time.time() % 1000:7.2f} {name} {what} {moved} {state}")

    def member(name: str) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"kip848-{unique}",
                "group.protocol": "consumer",
                "group.remote.assignor": assignor,
                "group.instance.id": name,
                "enable.auto.commit": False,
            }
        )
        held[name] = set()

        def on_assign(_c: Consumer, partitions: list[TopicPartition]) -> None:
            held[name] |= {(tp.topic, tp.partition) for tp in partitions}
            report(name, "assign", partitions)

        def on_revoke(_c: Consumer, partitions: list[TopicPartition]) -> None:
            held[name] -= {(tp.topic, tp.partition) for tp in partitions}
            report(name, "revoke", partitions)

        consumer.subscribe([x, y], on_assign=on_assign, on_revoke=on_revoke)
        while not stop.is_set():
            consumer.poll(0.1)
        consumer.close()

    threads = [threading.Thread(target=member, args=(n,), daemon=True) for n in ("c1", "c2", "c3")]
    threads[0].start()
    threads[1].start()
    time.sleep(8)
    threads[2].start()
    time.sleep(12)
    stop.set()
    for thread in threads:
        thread.join(10)
    print("\n".join(lines))
    print(f"{assignor}: {sum('SPLIT' in line for line in lines)} callbacks left a member split")
    admin.delete_topics([x, y])


if __name__ == "__main__":
    main()
