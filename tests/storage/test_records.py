"""Record metadata and the one-object layout, byte by byte."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from fluvial.exceptions import CorruptRecordError
from fluvial.storage import ResultRecordMetadata
from fluvial.storage.records import (
    MAGIC,
    encode_record,
    parse_header,
    payload_checksum,
    split_record,
)


def _metadata(payload: bytes, **changes: object) -> ResultRecordMetadata:
    fields: dict[str, object] = {
        "storage_key": "k",
        "serializer": "pickle",
        "size": len(payload),
        "checksum": payload_checksum(payload),
        **changes,
    }
    return ResultRecordMetadata(**fields)  # type: ignore[arg-type]


def test_metadata_round_trips_through_json() -> None:
    expiration = dt.datetime(2030, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-3)))
    metadata = _metadata(b"p", expiration=expiration)
    loaded = ResultRecordMetadata.load_bytes(metadata.dump_bytes())
    assert loaded == metadata
    assert b"\n" not in metadata.dump_bytes()
    assert not loaded.is_expired()
    assert loaded.is_expired(now=dt.datetime(2031, 1, 1, tzinfo=dt.UTC))


@pytest.mark.parametrize(
    "change",
    [
        {"created": "2024-01-01T00:00:00"},  # naive
        {"size": "12"},
        {"serializer": None},
        {"expiration": "tomorrow"},
    ],
)
def test_malformed_metadata_is_corrupt(change: dict[str, object]) -> None:
    data = {**_metadata(b"p").to_json_dict(), **change}
    with pytest.raises(CorruptRecordError, match="memory://x"):
        ResultRecordMetadata.load_bytes(orjson.dumps(data), url="memory://x")
    with pytest.raises(CorruptRecordError, match="not valid JSON"):
        ResultRecordMetadata.load_bytes(b"{", url="memory://x")


def test_one_object_layout_bytes() -> None:
    payload = b"\x00payload\nwith newlines\n"
    record = encode_record(_metadata(payload), payload)
    assert record.startswith(MAGIC)
    metadata, body = split_record(record, url="u")
    assert body == payload
    assert metadata.size == len(payload)
    header = parse_header(record[:40], url="u", at_eof=False)
    assert header is None  # needs more bytes
    assert parse_header(MAGIC[:5], url="u", at_eof=False) is None
    with pytest.raises(CorruptRecordError):
        parse_header(MAGIC[:5], url="u", at_eof=True)
    with pytest.raises(CorruptRecordError, match="not a fluvial result record"):
        parse_header(b"PK\x03\x04 a zip file", url="u", at_eof=False)
    with pytest.raises(CorruptRecordError, match="truncated"):
        split_record(record[:-1], url="u")
    with pytest.raises(CorruptRecordError, match="checksum"):
        split_record(record[:-1] + b"?", url="u")
