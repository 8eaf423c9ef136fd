"""Scopes, injective naming and JSON values: the small pieces every backend relies on."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from statestore.core.naming import (
    decode_segment,
    encode_segment,
    identity_scope,
    parse_path,
    scope_path,
    shorten_segment,
    validate_key,
)
from statestore.core.scopes import NEVER_EXPIRE, AssetScope, TaskScope, to_scope
from statestore.core.testing import ODD_KEYS
from statestore.core.values import decode_value, encode_value


@dataclass(frozen=True)
class LaterAirflowTaskScope:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int | None = -1
    region_id: str = "eu"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dag_id": "", "run_id": "r", "task_id": "t"}, "TaskScope.dag_id must be a non-empty string, got ''"),
        ({"dag_id": "d", "run_id": 1, "task_id": "t"}, "TaskScope.run_id must be a non-empty string, got 1"),
        ({"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -2}, "map_index must be -1 (unmapped) or >= 0"),
        ({"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": True}, "map_index must be an int, got True"),
    ],
)
def test_task_scope_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TaskScope(**kwargs)  # type: ignore[arg-type]


def test_asset_scope_validation() -> None:
    with pytest.raises(ValueError, match="requires at least one of: asset_id, name or uri"):
        AssetScope()
    with pytest.raises(ValueError, match="asset_id must be an int, got '7'"):
        AssetScope(asset_id="7")  # type: ignore[arg-type]


def test_to_scope_normalises_foreign_objects() -> None:
    assert to_scope(LaterAirflowTaskScope("d", "r", "t", 4)) == TaskScope("d", "r", "t", 4)
    assert to_scope(LaterAirflowTaskScope("d", "r", "t", None)) == TaskScope("d", "r", "t", -1)
    with pytest.raises(TypeError, match=r"expected a TaskScope or AssetScope .*, got int"):
        to_scope(5)


def test_never_expire_is_a_singleton() -> None:
    assert type(NEVER_EXPIRE)() is NEVER_EXPIRE
    assert repr(NEVER_EXPIRE) == "NEVER_EXPIRE"


@pytest.mark.parametrize("text", [*ODD_KEYS, "A-z_09", "é", "e\u0301", "~~"])
def test_segments_are_safe_and_invertible(text: str) -> None:
    segment = encode_segment(text)
    assert set(segment) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-%")
    assert decode_segment(segment) == text


@pytest.mark.parametrize("segment", ["a/b", "..", "%2f", "%ZZ", "%C3", "a b", "~"])
def test_decode_refuses_what_encode_cannot_produce(segment: str) -> None:
    with pytest.raises(ValueError, match="segment"):
        decode_segment(segment)


def test_scope_paths_round_trip_and_differ() -> None:
    scopes = [
        TaskScope("a/b", "c", "t"),
        TaskScope("a", "b/c", "t"),
        TaskScope("a", "b", "c", 0),
        AssetScope(name="x"),
        AssetScope(uri="x"),
        AssetScope(asset_id=7),
        AssetScope(name="7"),
    ]
    paths = [(*scope_path(s), encode_segment("k/../x")) for s in scopes]
    assert len(set(paths)) == len(scopes)
    for scope, path in zip(scopes, paths, strict=True):
        assert parse_path(path) == (scope, "k/../x")
    assert scope_path(TaskScope("d", "r", "t", 3), all_map_indices=True) == ("task", "d", "r", "t")
    with pytest.raises(ValueError, match="not a statestore path"):
        parse_path(["task", "d", "r", "t", "-2", "k"])


def test_identity_scope_keeps_the_naming_fields() -> None:
    assert identity_scope(AssetScope(asset_id=3, name="n", uri="u")) == AssetScope(name="n")
    assert identity_scope(AssetScope(asset_id=3, uri="u")) == AssetScope(uri="u")
    assert identity_scope(TaskScope("d", "r", "t", 1)) == TaskScope("d", "r", "t", 1)


def test_shortened_segments_stay_distinct_and_bounded() -> None:
    long_a, long_b = encode_segment("ü" * 200 + "a"), encode_segment("ü" * 200 + "b")
    short_a, short_b = shorten_segment(long_a, 255), shorten_segment(long_b, 255)
    assert short_a != short_b
    assert len(short_a) <= 255
    assert "~" in short_a
    assert "%" not in short_a[short_a.index("~") - 2 : short_a.index("~")], "an escape was cut in half"
    assert shorten_segment("short", 255) == "short"


def test_validate_key() -> None:
    assert validate_key("k" * 512) == "k" * 512
    with pytest.raises(ValueError, match="limited to 512 characters, got 513"):
        validate_key("k" * 513)
    with pytest.raises(ValueError, match="non-empty"):
        validate_key("")
    with pytest.raises(TypeError, match="store keys must be str, got bytes"):
        validate_key(b"k")


@pytest.mark.parametrize("value", ["x", 0, -1.5e-7, True, [], {"a": [1, None, {"b": "ü"}]}, 10**30])
def test_values_round_trip_exactly(value: object) -> None:
    assert decode_value(encode_value(value)) == value
    assert type(decode_value(encode_value(value))) is type(value)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (None, ValueError, "cannot store None; use delete"),
        ([1, math.nan], ValueError, r"value\[1\] is nan; NaN and Infinity are not JSON"),
        ({"a": math.inf}, ValueError, r"value\['a'\] is inf"),
        ((1, 2), TypeError, "value is a tuple, which is not JSON-compatible"),
        ({1: "x"}, TypeError, "value has a int key 1; JSON objects need str keys"),
        ({"s": {1, 2}}, TypeError, r"value\['s'\] is a set"),
    ],
)
def test_values_rejected(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        encode_value(value)
