"""Avro schemas and the single-object wire format.

`SchemaStore` loads a `schemas/` folder; `AvroCodec` encodes and decodes
single-object encoded records, resolving the writer schema by fingerprint.
"""

from streamline.serde.codec import AvroCodec, DecodeError, EncodeError
from streamline.serde.schema_store import Schema, SchemaError, SchemaStore

__all__ = ["AvroCodec", "DecodeError", "EncodeError", "Schema", "SchemaError", "SchemaStore"]
