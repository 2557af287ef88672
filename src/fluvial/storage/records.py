"""What a stored result is: metadata that can be read alone, plus the serialized payload.

One-object layout (the default), so one atomic write publishes a whole record::

    FLUVIAL-RESULT 1\\n          magic line: format and version
    {"storage_key": ...}\\n      the metadata as one JSON line (orjson never emits a newline)
    <payload bytes>             exactly ``metadata.size`` bytes from the serializer

The header comes first so :meth:`ResultStore.read_metadata` needs only a ranged read of the
first few KB, and never unpickles anything. In the split layout (a ``metadata_storage``,
Prefect's ``key_storage``) the metadata JSON is a file of its own and the payload is stored
raw. ``size`` and a blake2b ``checksum`` of the payload detect torn or altered records.
"""

from __future__ import annotations

__all__ = (
    "MAGIC",
    "ResultRecord",
    "ResultRecordMetadata",
    "encode_record",
    "parse_header",
    "payload_checksum",
    "split_record",
)

import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Self

import orjson

from ..exceptions import CorruptRecordError

#: First line of every one-object record; the digit is the layout version.
MAGIC = b"FLUVIAL-RESULT 1\n"
#: A header longer than this is not one fluvial wrote.
MAX_HEADER_SIZE = 1 << 20


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@cache
def fluvial_version() -> str:
    """Return the running fluvial's version (imported late: fluvial imports storage lazily)."""
    from fluvial import __version__

    return __version__


def payload_checksum(payload: bytes) -> str:
    """Return the hex blake2b digest (16 bytes) that records keep of their payload."""
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


# Metadata parsed recently, by the exact bytes it was parsed from. A cache hit re-reads the
# record's header to check it is still current; the same bytes need not be parsed again
# (metadata is frozen, so sharing one object is safe). Cleared when full: a bound, not an LRU.
_parsed_headers: dict[bytes, ResultRecordMetadata] = {}
_PARSED_HEADERS_MAX = 1024


@dataclass(frozen=True, slots=True)
class ResultRecordMetadata:
    """Everything about a stored result except its value; readable without deserializing.

    ``size`` and ``checksum`` are ``None`` until the record is persisted.
    """

    storage_key: str
    serializer: str
    expiration: dt.datetime | None = None
    fluvial_version: str = field(default_factory=fluvial_version)
    created: dt.datetime = field(default_factory=_utcnow)
    size: int | None = None
    checksum: str | None = None

    def is_expired(self, now: dt.datetime | None = None) -> bool:
        """Return True if the record has an expiration and it is not in the future."""
        if self.expiration is None:
            return False
        return self.expiration <= (now or _utcnow())

    def to_json_dict(self) -> dict[str, Any]:
        """Return the metadata as JSON-native values (datetimes as ISO 8601 strings)."""
        return {
            "storage_key": self.storage_key,
            "serializer": self.serializer,
            "expiration": None if self.expiration is None else self.expiration.isoformat(),
            "fluvial_version": self.fluvial_version,
            "created": self.created.isoformat(),
            "size": self.size,
            "checksum": self.checksum,
        }

    def dump_bytes(self) -> bytes:
        """Return the metadata as one line of JSON."""
        return orjson.dumps(self.to_json_dict())

    @classmethod
    def load_bytes(cls, data: bytes, *, url: str = "<bytes>") -> Self:
        """Parse metadata written by :meth:`dump_bytes`.

        Raises:
            CorruptRecordError: *data* is not metadata fluvial wrote; names *url*.
        """
        known = _parsed_headers.get(data)
        if known is not None and known.__class__ is cls:
            return known
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise CorruptRecordError(
                f"the metadata of {url} is not valid JSON ({exc})", url=url
            ) from exc
        metadata = cls.from_json_dict(parsed, url=url)
        if len(_parsed_headers) >= _PARSED_HEADERS_MAX:
            _parsed_headers.clear()
        _parsed_headers[bytes(data)] = metadata
        return metadata

    @classmethod
    def from_json_dict(cls, data: Any, *, url: str = "<dict>") -> Self:
        """Build metadata from :meth:`to_json_dict` output, checking every field's type.

        Raises:
            CorruptRecordError: a field is missing or has the wrong type; names *url*.
        """
        try:
            return cls(
                storage_key=_field(data, "storage_key", str),
                serializer=_field(data, "serializer", str),
                expiration=_aware(data.get("expiration")),
                fluvial_version=_field(data, "fluvial_version", str),
                created=_aware(_field(data, "created", str)) or _utcnow(),
                size=_optional(data, "size", int),
                checksum=_optional(data, "checksum", str),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise CorruptRecordError(
                f"{url} does not hold fluvial result metadata ({exc})", url=url
            ) from exc


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind):
        raise TypeError(f"field {name!r} should be {kind.__name__}, found {value!r}")
    return value


def _optional(data: dict[str, Any], name: str, kind: type) -> Any:
    return None if data.get(name) is None else _field(data, name, kind)


def _aware(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return parsed


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """A result value together with its metadata (Prefect's ``ResultRecord``)."""

    metadata: ResultRecordMetadata
    result: Any

    @property
    def value(self) -> Any:
        """The result value (an alias of :attr:`result`)."""
        return self.result

    def with_metadata(self, **changes: Any) -> ResultRecord:
        """Return a copy whose metadata has *changes* applied."""
        return ResultRecord(dataclasses.replace(self.metadata, **changes), self.result)


def encode_record(metadata: ResultRecordMetadata, payload: bytes) -> bytes:
    """Return the one-object form of a record: magic line, metadata line, payload."""
    return b"".join((MAGIC, metadata.dump_bytes(), b"\n", payload))


def parse_header(data: bytes, *, url: str, at_eof: bool) -> tuple[ResultRecordMetadata, int] | None:
    """Parse the header at the start of a one-object record.

    *data* is a prefix of the object; *at_eof* says it is the whole object. Returns the
    metadata and the payload's offset, or ``None`` when the header goes on past *data*.

    Raises:
        CorruptRecordError: the object is foreign, truncated inside the header, or garbled.
    """
    if not data.startswith(MAGIC):
        if not at_eof and len(data) < len(MAGIC) and MAGIC.startswith(data):
            return None
        raise CorruptRecordError(
            f"{url} is not a fluvial result record (foreign, corrupt or truncated data)", url=url
        )
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        if at_eof or len(data) > MAX_HEADER_SIZE:
            raise CorruptRecordError(f"the header of {url} is truncated or garbled", url=url)
        return None
    return ResultRecordMetadata.load_bytes(data[len(MAGIC) : end], url=url), end + 1


def verify_payload(metadata: ResultRecordMetadata, payload: bytes, *, url: str) -> None:
    """Check the payload's size and checksum against its metadata.

    Raises:
        CorruptRecordError: the payload was torn or altered after it was written.
    """
    if metadata.size is None or metadata.checksum is None:
        raise CorruptRecordError(f"the metadata of {url} has no size or checksum", url=url)
    if len(payload) != metadata.size:
        raise CorruptRecordError(
            f"the payload of {url} is {len(payload)} bytes but its metadata says "
            f"{metadata.size}: the record is truncated or was overwritten",
            url=url,
        )
    if payload_checksum(payload) != metadata.checksum:
        raise CorruptRecordError(f"the payload of {url} fails its checksum", url=url)


def split_record(data: bytes, *, url: str) -> tuple[ResultRecordMetadata, bytes]:
    """Split a whole one-object record into verified metadata and payload.

    Raises:
        CorruptRecordError: the record is foreign, truncated, or fails its checksum.
    """
    header = parse_header(data, url=url, at_eof=True)
    assert header is not None  # at_eof: never asks for more
    metadata, offset = header
    payload = data[offset:]
    verify_payload(metadata, payload, url=url)
    return metadata, payload
