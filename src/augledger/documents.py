"""Strict, bounded loading of YAML and JSON documents (specs, policies): data only, never code.

PyYAML's safe loader (no Python tags), plus: a repeated key is an error, not a silent override; a
complex key is refused; and limits on size, nesting and values (YAML aliases counted as expanded),
so a huge file, a deeply nested one or an alias bomb ("billion laughs") fails at once, in bounded
time and memory, with a :class:`~augledger.errors.SpecError` instead of a hang or a ``RecursionError``.
NaN and infinities are refused too: they have no canonical JSON form, so they can be neither hashed
nor recorded.
"""

from __future__ import annotations

import io
import json
import math
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from augledger.errors import ParamError, SpecError

__all__ = ["MAX_DEPTH", "MAX_DOCUMENT_CHARS", "MAX_VALUES", "check_document", "load_document", "load_text"]


#: Limits on a spec or policy document. A real one is a few KB, a few levels deep, with at most a
#: few thousand values; anything beyond is refused before it is parsed further or validated, so a
#: huge file, a deeply nested one or a YAML alias bomb ("billion laughs") fails at once, in bounded
#: time and memory, with a :class:`SpecError` instead of a hang or a ``RecursionError``.
MAX_DOCUMENT_CHARS = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000


def _check_size(data: Any, source: str) -> None:
    """Refuse a document nested deeper than :data:`MAX_DEPTH` or holding more than :data:`MAX_VALUES`
    values once YAML aliases are expanded (counted without expanding: the walk stops at the limit)."""
    where = f" {source}" if source else ""
    count, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise SpecError(f"document{where} holds more than {MAX_VALUES} values (YAML aliases expanded); a spec "
                            "holds a few hundred. Refused: write each value out, without alias chains")
        if depth > MAX_DEPTH:
            raise SpecError(f"document{where} is nested more than {MAX_DEPTH} levels deep; a spec needs a few")
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)


def _reject_non_finite(value: Any, location: str) -> None:
    """NaN and infinities have no canonical JSON form, so they can neither be hashed nor recorded."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ParamError(f"expected a finite number; got {value!r}. Use a finite bound instead", location=location)
    if isinstance(value, Mapping):
        for k, v in value.items():
            _reject_non_finite(v, f"{location}.{k}" if location else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _reject_non_finite(v, f"{location}[{i}]")


class _StrictSafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus: a repeated mapping key is an error, not a silent override; nesting
    deeper than :data:`MAX_DEPTH` stops the parse at once (PyYAML's composer recurses per level,
    and its scanner is quadratic in flow nesting: 10,000 ``[`` take minutes, then overflow the stack)."""

    _depth = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise SpecError(f"nested more than {MAX_DEPTH} levels deep{_mark(self.get_mark())}; a spec needs a few")
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise SpecError(f"nested more than {MAX_DEPTH} levels deep{_mark(self.get_mark())}; "
                                "a spec needs a few")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _mapping_without_duplicates(loader: _StrictSafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, typing.Hashable):  # a complex key (``? [a, b]``): no spec field is one
            mark = key_node.start_mark
            raise SpecError(f"a mapping key must be a plain value; got {type(key).__name__} {key!r} at line "
                            f"{mark.line + 1}, column {mark.column + 1}")
        if key in seen:
            mark = key_node.start_mark
            raise SpecError(
                f"duplicate key {key!r} at line {mark.line + 1}, column {mark.column + 1}; "
                "each key may appear once per mapping. Remove one of them."
            )
        seen[key] = loader.construct_object(value_node, deep=True)
    return seen


_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _mapping_without_duplicates,
)


def load_text(text: str, *, source: str, as_json: bool) -> Any:
    if len(text) > MAX_DOCUMENT_CHARS:
        raise SpecError(f"{source or 'spec'} is {len(text)} characters long; a spec or policy is at most "
                        f"{MAX_DOCUMENT_CHARS} (a real one is a few thousand)")
    data = _parse_text(text, source=source, as_json=as_json)
    _check_size(data, source)
    return data


def _parse_text(text: str, *, source: str, as_json: bool) -> Any:
    if as_json:
        def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            keys = [k for k, _ in pairs]
            dups = sorted({k for k in keys if keys.count(k) > 1})
            if dups:
                raise SpecError(f"duplicate key(s) {dups!r} in {source or 'JSON'}; each key may appear once")
            return dict(pairs)

        try:
            return json.loads(text, object_pairs_hook=no_duplicates)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{source or 'spec'} is not valid JSON: {exc}") from None
        except RecursionError:  # the C decoder's own depth limit, hit at once
            raise SpecError(f"{source or 'spec'} is nested too deeply to read; a spec needs a few levels") from None
    stream = io.StringIO(text)
    stream.name = source or "<spec text>"  # PyYAML's error marks name the stream
    try:
        return yaml.load(stream, Loader=_StrictSafeLoader)
    except yaml.constructor.ConstructorError as exc:
        raise SpecError(
            f"{source or 'spec'}: unsupported YAML tag ({exc.problem}{_mark(exc.problem_mark)}). "
            "A spec is data, never code: remove the tag and write the value as plain YAML."
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source or 'spec'} is not valid YAML: {exc}") from None


def _mark(mark: Any) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def check_document(data: Any, source: str = "") -> None:
    """Refuse plain data that breaks the limits (:data:`MAX_DEPTH`, :data:`MAX_VALUES`) or holds NaN or
    an infinity (as :class:`~augledger.errors.ParamError` naming its location)."""
    _check_size(data, source)
    _reject_non_finite(data, "")


def load_document(path: str | Path, /, *, what: str = "spec") -> Any:
    """Read a ``.yaml``/``.yml``/``.json`` file as plain data with the strict safe loader specs use.

    ``what`` names the document in messages (``spec``, ``policy``).

    Raises:
        SpecError: the file is missing, not UTF-8, has an unsafe tag or a duplicate key, or is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{what} file {str(path)!r} does not exist; check the path")
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise SpecError(
            f"{what} file {str(path)!r} must end in .yaml, .yml or .json; got {path.suffix!r}. "
            f"Rename it (a {what} is YAML or JSON data)"
        )
    if path.stat().st_size > 4 * MAX_DOCUMENT_CHARS:  # not read at all (UTF-8 takes at most 4 bytes a character)
        raise SpecError(f"{what} file {str(path)!r} is {path.stat().st_size} bytes; a {what} is at most "
                        f"{MAX_DOCUMENT_CHARS} characters")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{what} file {str(path)!r} cannot be read as UTF-8 text: {exc}") from None
    return load_text(text, source=str(path), as_json=path.suffix.lower() == ".json")
