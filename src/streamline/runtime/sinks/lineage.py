"""The lineage datasets of the sinks that are not Kafka topics: the files a transaction's
commit writes and the webhooks it POSTed to (see observability/lineage.py)."""

from __future__ import annotations

from typing import Any

from streamline.observability.lineage import file_dataset, webhook_dataset
from streamline.runtime.sinks.files import FileSinks
from streamline.runtime.sinks.webhook import WebhookSender


def sink_datasets(
    files: FileSinks | None, webhooks: list[WebhookSender], outputs_by_topic: dict[str, int]
) -> list[dict[str, Any]]:
    """Each file the commit is about to write, each webhook with the records it acknowledged
    in this transaction (`outputs_by_topic["webhook:<name>"]`)."""
    out = []
    for writer in files.writers if files is not None else []:
        for path, records, source in writer.planned():
            out.append(file_dataset(writer.name, path, writer.extension, records, source))
    for sender in webhooks:
        acknowledged = outputs_by_topic.get(f"webhook:{sender.name}", 0)
        if acknowledged:
            out.append(webhook_dataset(sender.name, sender.spec.url, acknowledged))
    return out
