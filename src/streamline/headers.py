"""Every `streamline.*` record header name, in one place.

Outputs, dead letters, retry, late, repartition and marker records carry these; the
user-facing meaning of each is in `docs/topology.md` ("Headers").
"""

from __future__ import annotations

# on every output record
TOPOLOGY = "streamline.topology"  # name@version#fingerprint12
SOURCE = "streamline.source"  # topic/partition/first_offset-last_offset of the inputs
EVENT_TIME = "streamline.event_time"
QUALITY_WARNINGS = "streamline.quality.warnings"  # comma-separated warn rules the record broke

# on records whose value bytes are vouched for: `produce --checksum`, `sink.checksum: true`
CHECKSUM = "streamline.checksum"  # sha256 hex of the value bytes

# on records `streamline produce` read from a file: lineage back to the file and line
INGEST_FILE = "streamline.ingest.file"  # the file as given on the command line
INGEST_SHA256 = "streamline.ingest.sha256"  # sha256 hex of the whole file
INGEST_LINE = (
    "streamline.ingest.line"  # line number (CSV, JSON lines) or row number (Parquet), from 1
)

# on dead-letter, retry and late records: why the record failed, and where it came from
ERROR_PREFIX = "streamline.error."
ERROR_TYPE = "streamline.error.type"
ERROR_MESSAGE = "streamline.error.message"
ERROR_STAGE = "streamline.error.stage"
ERROR_RULE = "streamline.error.rule"
ERROR_FIELD = "streamline.error.field"  # the field path of a `schema` failure (`items[2].price`)
ATTEMPTS = "streamline.attempts"
SOURCE_PREFIX = "streamline.source."
SOURCE_TOPIC = "streamline.source.topic"
SOURCE_PARTITION = "streamline.source.partition"
SOURCE_OFFSET = "streamline.source.offset"
SOURCE_KEY = "streamline.source.key"  # the source record's key, on repartition records
FAILED_AT = "streamline.failed_at"
ORIGINAL = "streamline.original"  # the original value bytes, on repartition records

# on retry records
RETRY_PREFIX = "streamline.retry."
RETRY_NOT_BEFORE = "streamline.retry.not_before"
RETRY_TOPIC_ATTEMPTS = "streamline.retry.topic_attempts"  # passes through the retry topic

# on late records
WATERMARK = "streamline.watermark"

# on watermark markers written to repartition partitions
WATERMARK_MARKER = "streamline.watermark_marker"

# on records re-sent by `streamline dlq replay`
REPLAY_PREFIX = "streamline.replay."
REPLAY_FROM = "streamline.replay.from"
REPLAY_AT = "streamline.replay.at"
