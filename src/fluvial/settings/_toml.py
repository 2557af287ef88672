"""Read the profiles file with ``tomllib`` and write it back, atomically.

The file holds ``active = "<name>"`` and one ``[profiles.<name>]`` table per profile whose keys
are environment-variable names with scalar values. That is all this writer needs to produce, so
it writes TOML itself rather than depending on a TOML writer. Comments in the file are not kept
when it is rewritten (Prefect's ``profiles.toml`` behaves the same way).
"""

from __future__ import annotations

__all__ = ("Scalar", "dump_profiles", "format_key", "format_value", "read_toml", "write_atomic")

import math
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError

Scalar = str | bool | int | float

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def read_toml(path: Path) -> dict[str, Any] | None:
    """Return the parsed file at *path*, or None if it does not exist.

    Raises:
        ConfigurationError: the file cannot be read or is not valid TOML.
    """
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        return None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"profiles file {path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read profiles file {path}: {exc}") from None


def _quote(text: str) -> str:
    out = ['"']
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " " or char == "\x7f":
            out.append(f"\\u{ord(char):04X}")
        elif "\ud800" <= char <= "\udfff":
            raise ConfigurationError(f"{text!r} holds a lone surrogate, which TOML cannot store")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def format_key(key: str) -> str:
    """Return *key* as a TOML key: bare when it can be, else a quoted string."""
    return key if _BARE_KEY.fullmatch(key) else _quote(key)


def format_value(value: object) -> str:
    """Return *value* (a str, bool, int or float) as a TOML value.

    Raises:
        ConfigurationError: *value* has another type.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    raise ConfigurationError(
        f"cannot write {value!r} ({type(value).__name__}) to a profile: "
        "use a string, a boolean or a number"
    )


def dump_profiles(active: str, profiles: Mapping[str, Mapping[str, object]]) -> str:
    """Return the text of a profiles file."""
    lines = [f"active = {_quote(active)}"]
    for name, values in profiles.items():
        lines += ["", f"[profiles.{format_key(name)}]"]
        lines += [f"{format_key(key)} = {format_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Replace *path* by *text* so that readers see the old file or the new one, never a part.

    The text goes to a temporary file in the same directory, is flushed to disk and renamed over
    *path*. An existing file keeps its permissions; a new one is readable by its owner only,
    since profiles may one day hold credentials.
    """
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
