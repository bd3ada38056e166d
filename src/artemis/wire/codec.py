"""Encoding and lenient decoding of the wire shapes, and `_Wire`, the base of every shape.

Every shape is a msgspec Struct whose fields are declared in the alphabetical order of their
camelCase names, so that encoding gives exactly what the original's Jackson mapper gives: keys
sorted, nulls written, primitives defaulting to 0.

Reading follows Jackson's lenient habits: keys are matched case-insensitively, unknown keys are
ignored and a null for a primitive means its default. The fast path decodes canonical JSON
straight into the Structs (they forbid unknown fields, so any key that is not spelled canonically
makes the fast path fail); only then is the body decoded generically, its keys folded onto the
canonical names, and the result converted.

Duplicated keys are refused (DecodeError naming the key), never resolved: an object may not name
a key twice, nor two spellings of one field (`url` and `URL`, which the lenient reading would
fold together); a map such as `metadata` may hold `url` and `URL` (its keys are data), but not
`url` twice. JSON parsers disagree on which of two values wins, so a front proxy or an audit
log could read another instance than the node stores. How it stays cheap: a body that is
exactly what encoding the decoded value gives (canonical JSON: every real client, Jackson and
msgspec alike, sends it) cannot hold a duplicate, and costs one encode and one comparison; any
other body is compared with its own compacted form, and only when their text differs (escapes,
number spellings) parsed again pair by pair.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Final, TypeVar, Union, get_args, get_origin

import msgspec

__all__ = ["DecodeError", "decode", "encode"]


class _Wire(
    msgspec.Struct,
    rename="camel",
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=False,
    frozen=True,
):
    """Base of every wire shape: camelCase, keyword-only, nulls written."""


T = TypeVar("T")


class DecodeError(ValueError):
    """The body is not JSON of the expected shape; the message names the problem."""


_ENCODER: Final = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def encode(value: Any) -> bytes:
    """Encode a wire value to JSON bytes (keys in declaration, hence alphabetical, order)."""
    return _ENCODER.encode(value)


def decode(data: bytes, kind: type[T], *, unique_keys: bool = True) -> T:
    """Decode `data` into `kind`, Jackson-style lenient; raise DecodeError naming the problem.
    `unique_keys=False` skips the exact-duplicate check (answers of a trusted node, where it
    would cost a third of the decoding); two spellings of one field are refused either way."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        result = decoder.decode(data)
    except msgspec.ValidationError:
        pass  # maybe only spelled differently: try the lenient path below
    except msgspec.DecodeError as exc:
        raise DecodeError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise DecodeError(_TOO_DEEP) from None
    else:
        if unique_keys and _ENCODER.encode(result) != data:  # not canonical: may name a key twice
            _refuse_duplicates(data, msgspec.json.decode(data))
        return typing.cast(T, result)
    try:
        raw = msgspec.json.decode(data)
        if unique_keys:
            _refuse_duplicates(data, raw)
        return msgspec.convert(_fold(raw, kind), kind)
    except msgspec.ValidationError as exc:  # (a subclass of msgspec.DecodeError)
        raise DecodeError(str(exc)) from None
    except msgspec.DecodeError as exc:  # pragma: no cover - the typed decoder saw it first
        raise DecodeError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise DecodeError(_TOO_DEEP) from None


_TOO_DEEP: Final = "JSON is nested too deeply"


def _refuse_duplicates(data: bytes, parsed: Any) -> None:
    """DecodeError if an object of `data` (which decodes to `parsed`) names a key twice."""
    if _ENCODER.encode(parsed) == msgspec.json.format(data, indent=-1):
        return  # the same text once compacted: no key was lost to a duplicate
    try:
        json.loads(data, object_pairs_hook=_unique_pairs)
    except RecursionError:
        raise DecodeError(_TOO_DEEP) from None
    except json.JSONDecodeError:  # pragma: no cover - what msgspec read, json reads too
        pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DecodeError(f"duplicate key {key[:64]!r}")
        out[key] = value
    return out


class _Shape:
    """How to fold one Struct's keys: canonical name by lower-case name, and field types."""

    __slots__ = ("by_lower", "non_null", "types")

    def __init__(self, cls: type[msgspec.Struct]) -> None:
        hints = typing.get_type_hints(cls)
        self.by_lower: dict[str, str] = {}
        self.types: dict[str, Any] = {}
        self.non_null: set[str] = set()
        for field in msgspec.structs.fields(cls):
            self.by_lower[field.encode_name.lower()] = field.encode_name
            tp = hints[field.name]
            self.types[field.encode_name] = tp
            if not _admits_none(tp) and field.default is not msgspec.NODEFAULT:
                self.non_null.add(field.encode_name)


_shapes: dict[type[Any], _Shape] = {}


def _admits_none(tp: Any) -> bool:
    return tp is Any or (_is_union(tp) and type(None) in get_args(tp))


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _fold(raw: Any, tp: Any) -> Any:
    """Rename keys of `raw` to the canonical names of `tp`, drop unknown keys and nulls for
    primitives; leave anything else for msgspec.convert to judge."""
    if _is_union(tp):
        members = [a for a in get_args(tp) if a is not type(None)]
        return _fold(raw, members[0]) if len(members) == 1 else raw
    origin = get_origin(tp)
    if origin is list and isinstance(raw, list):
        (item,) = get_args(tp)
        return [_fold(x, item) for x in raw]
    if origin is dict and isinstance(raw, dict):
        _, value_type = get_args(tp)
        return {k: _fold(v, value_type) for k, v in raw.items()}
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct) and isinstance(raw, dict):
        shape = _shapes.get(tp)
        if shape is None:
            shape = _shapes[tp] = _Shape(tp)
        out: dict[str, Any] = {}
        seen: dict[str, str] = {}
        for key, value in raw.items():
            name = shape.by_lower.get(key.lower()) if isinstance(key, str) else None
            if name is None:
                continue
            if name in seen:
                raise DecodeError(f"duplicate key {key[:64]!r} (also given as "
                                  f"{seen[name][:64]!r})")
            seen[name] = key
            if value is None and name in shape.non_null:
                continue
            out[name] = _fold(value, shape.types[name])
        return out
    return raw
