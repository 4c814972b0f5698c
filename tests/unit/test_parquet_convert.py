"""Arrow values (as pyarrow gives them) become values of the schema's Avro types."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

from streamline.ops.parquet import to_avro, to_avro_record

MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
MICROS = {"type": "long", "logicalType": "timestamp-micros"}


def test_timestamps_become_epoch_integers_and_naive_ones_are_utc() -> None:
    moment = datetime(2026, 1, 1, 0, 0, 1, 2345)
    assert to_avro(moment, MILLIS) == 1_767_225_601_002
    assert to_avro(moment, MICROS) == 1_767_225_601_002_345
    plus_one = datetime(2026, 1, 1, 1, 0, 1, 2000, tzinfo=timezone(timedelta(hours=1)))
    assert to_avro(plus_one, MILLIS) == 1_767_225_601_002
    assert to_avro(datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), MILLIS) == -1


def test_dates_and_times_become_their_logical_integers() -> None:
    assert to_avro(date(1970, 1, 11), {"type": "int", "logicalType": "date"}) == 10
    assert to_avro(time(0, 1, 2, 500), {"type": "int", "logicalType": "time-millis"}) == 62_000
    assert to_avro(time(0, 0, 1, 5), {"type": "long", "logicalType": "time-micros"}) == 1_000_005


def test_nullable_nested_records_arrays_and_maps_are_converted_through() -> None:
    point = {
        "type": "record",
        "name": "P",
        "fields": [{"name": "at", "type": ["null", MILLIS]}, {"name": "n", "type": "long"}],
    }
    record_type = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "p", "type": ["null", point]},
            {"name": "ps", "type": {"type": "array", "items": point}},
            {"name": "m", "type": {"type": "map", "values": MILLIS}},
            {"name": "absent", "type": "long", "default": 3},
        ],
    }
    epoch = datetime(1970, 1, 1, 0, 0, 0, 5000)
    row = {
        "p": {"at": epoch, "n": 1},
        "ps": [{"at": None, "n": 2}],
        "m": [("k", epoch)],  # pyarrow gives a map as key/value pairs
    }
    assert to_avro_record(row, record_type) == {
        "p": {"at": 5, "n": 1},
        "ps": [{"at": None, "n": 2}],
        "m": {"k": 5},
    }
    assert to_avro_record({"p": None, "ps": [], "m": []}, record_type)["p"] is None
