"""Sink encoding: the records that leave the stages as bytes of the sink schema.

`Encode` writes a batch's values in the sink's format, through the generated batch
writer where the sink is Avro; a value that does not fit is a `sink` dead letter.
When the stages keep every value as decoded and the sources are the sink's Avro schema
(`unchanged_header`), a record's input bytes are its output bytes.
"""

from __future__ import annotations

from streamline.reliability.dead_letter import SINK, Failure
from streamline.runtime.record import Record
from streamline.runtime.stages import (
    Decode,
    EventTime,
    Failed,
    Filter,
    KeyBy,
    Stage,
    TrackNulls,
    Validate,
    VerifyChecksum,
)
from streamline.serde import AvroCodec, EncodeError
from streamline.serde.codec import MAGIC
from streamline.serde.formats import Codec


class Encode:
    """Records to bytes of the sink schema in the sink's format; a misfit is a dead letter.

    With `unchanged` (see `unchanged_header`), a record whose input bytes carry that
    single-object header goes out as those bytes: its stages kept its value as it was
    decoded, so they are bytes of the sink schema that decode to the record it writes.
    """

    def __init__(self, name: str, codec: Codec, unchanged: bytes | None = None) -> None:
        self.name = name
        self.codec = codec
        self.unchanged = unchanged

    def encode(self, batch: list[Record], failed: Failed) -> list[tuple[Record, bytes]]:
        encode, header = self.codec.encode, self.unchanged

        def written(record: Record) -> bytes | None:  # a misfit is a dead letter: None
            try:
                return encode(record.value, check=False)
            except EncodeError as exc:
                failed(record, Failure(SINK, str(exc), self.name))
                return None

        write_batch = getattr(self.codec, "write_batch", None)
        if header is None and write_batch is not None:  # what it does not write: `written`
            return write_batch(batch, written)  # type: ignore[no-any-return]
        out = []
        for record in batch:
            raw = record.raw
            data = (
                raw
                if header is not None and type(raw) is bytes and raw.startswith(header)
                else written(record)
            )
            if data is not None:
                out.append((record, data))
        return out


VALUE_KEEPING = (VerifyChecksum, Decode, TrackNulls, EventTime, Validate, Filter, KeyBy)
"""Stages that never change a record's value (only drop, fail, time, key or count it)."""


def unchanged_header(stages: list[Stage], sources: list[Codec], sink: Codec) -> bytes | None:
    """The single-object header of records the sink can write as they were read, if any.

    That is when every stage keeps the value and the sources and the sink are the same
    Avro schema in the single-object format: the bytes the record was read from are
    then bytes of the sink schema that decode to the record the sink would write.
    """
    if type(sink) is not AvroCodec or not all(type(s) in VALUE_KEEPING for s in stages):
        return None
    fingerprint = sink.schema.fingerprint
    if not sources or any(
        type(s) is not AvroCodec or s.schema.fingerprint != fingerprint for s in sources
    ):
        return None
    return MAGIC + fingerprint
