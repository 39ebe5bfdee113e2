"""Typed reads of JSON values, each error naming the field it is about (``temperature.value must be ...``).

Used to validate model cards completely when they are read: a value of the wrong type, out of
range or an unknown key raises :class:`FieldError` with a one-line message that starts with the
field's dotted path. :class:`Record` reads a whole frozen dataclass, one reader per key.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, ClassVar, TypeVar

T = TypeVar("T")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class FieldError(ValueError):
    """A JSON value that does not fit its field; the message names the field."""


def shown(value: Any) -> str:
    """``repr(value)``, cut to 60 characters: short enough for a one-line message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def mapping(value: Any, field: str) -> dict[str, Any]:
    """``value`` as an object with any keys."""
    if not isinstance(value, dict):
        raise FieldError(f"{field} must be an object, got {shown(value)}")
    return value


def obj(value: Any, field: str, keys: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
    """``value`` as an object holding no keys beyond ``keys`` and every one of ``required``."""
    mapping(value, field)
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise FieldError(f"{field} has unknown keys {unknown}")
    missing = [k for k in required if k not in value]
    if missing:
        raise FieldError(f"{field} lacks {', '.join(missing)}")
    return value


def array(value: Any, field: str, min_length: int = 0) -> list[Any]:
    if not isinstance(value, list) or len(value) < min_length:
        raise FieldError(f"{field} must be a list of at least {min_length} values, got {shown(value)}")
    return value


def string(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise FieldError(f"{field} must be a non-empty string, got {shown(value)}")
    return value


def number(value: Any, field: str, minimum: float | None = None, maximum: float | None = None, above: float | None = None) -> float:
    """A finite number, at least ``minimum``, at most ``maximum`` and greater than ``above`` where given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FieldError(f"{field} must be a finite number, got {shown(value)}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum) or (above is not None and value <= above):
        bounds = [f">= {minimum:g}" if minimum is not None else "", f"<= {maximum:g}" if maximum is not None else "", f"> {above:g}" if above is not None else ""]
        raise FieldError(f"{field} must be {' and '.join(b for b in bounds if b)}, got {shown(value)}")
    return float(value)


def integer(value: Any, field: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        at_least = f" >= {minimum}" if minimum is not None else ""
        raise FieldError(f"{field} must be a whole number{at_least}, got {shown(value)}")
    return value


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(f"{field} must be true or false, got {shown(value)}")
    return value


def sha256(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise FieldError(f"{field} must be a sha256 (64 lowercase hex characters), got {shown(value)}")
    return value


def optional(read: Callable[..., T], value: Any, field: str, *args: Any) -> T | None:
    """``None`` for a missing or null value, else ``read(value, field, *args)``."""
    return None if value is None else read(value, field, *args)


def dict_of(read: Callable[[Any, str], T], value: Any, field: str) -> dict[str, T]:
    """An object whose every value ``read`` accepts."""
    return {k: read(v, f"{field}.{k}") for k, v in mapping(value, field).items()}


class Record:
    """A frozen dataclass read from a JSON object key by key: ``_readers[key](value, "field.key")``.

    ``_required`` keys (default: the dataclass fields without a default) must be present and not
    null; the others may be missing or null (None).
    """

    _readers: ClassVar[Mapping[str, Callable[[Any, str], Any]]] = {}
    _required: ClassVar[Sequence[str] | None] = None

    @classmethod
    def from_dict(cls, data: Any, field: str) -> Any:
        names = [x.name for x in dataclasses.fields(cls)]  # type: ignore[arg-type]
        required = cls._required
        if required is None:
            required = [x.name for x in dataclasses.fields(cls) if x.default is dataclasses.MISSING]  # type: ignore[arg-type]
        d = obj(data, field, names, required)
        read = cls._readers
        return cls(**{k: read[k](d[k], f"{field}.{k}") if k in required else optional(read[k], d.get(k), f"{field}.{k}") for k in names})
