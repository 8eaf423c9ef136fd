"""Scopes, injective naming and JSON values: the small pieces every backend relies on."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from statestore.core.backends.local import LocalStoreBackend
from statestore.core.backends.memory import MemoryStoreBackend
from statestore.core.config import Config
from statestore.core.naming import (
    asset_identity,
    decode_segment,
    encode_segment,
    identity_scope,
    parse_path,
    scope_path,
    shorten_segment,
    validate_key,
)
from statestore.core.scopes import NEVER_EXPIRE, AssetScope, TaskScope, to_scope
from statestore.core.store import StateStore
from statestore.core.testing import ODD_KEYS
from statestore.core.values import MAX_DEPTH, check_value_text, decode_value, encode_value


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
        (
            {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -2},
            "map_index must be -1 (unmapped) or 0..2147483647 (Airflow's map index is a 32-bit integer), got -2",
        ),
        ({"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": 2**31}, "0..2147483647 (Airflow"),
        ({"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": True}, "map_index must be an int, got True"),
        ({"dag_id": "a\x00b", "run_id": "r", "task_id": "t"}, "TaskScope.dag_id contains a NUL character"),
        ({"dag_id": "d", "run_id": "\x00", "task_id": "t"}, "TaskScope.run_id contains a NUL character"),
        ({"dag_id": "d", "run_id": "r", "task_id": "t\ud800"}, "TaskScope.task_id contains a lone surrogate"),
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
    for bad_id in (-1, 2**31):
        with pytest.raises(ValueError, match=rf"asset_id must be 0..2147483647 .*, got {bad_id}"):
            AssetScope(asset_id=bad_id)
    with pytest.raises(ValueError, match=r"AssetScope\.name contains a NUL character"):
        AssetScope(name="orders\x00")
    with pytest.raises(ValueError, match=r"AssetScope\.uri contains a lone surrogate"):
        AssetScope(name="n", uri="s3://\udfff")
    assert AssetScope(asset_id=2**31 - 1).asset_id == 2**31 - 1
    assert TaskScope("d", "r", "t", 2**31 - 1).map_index == 2**31 - 1


def test_one_message_for_unstorable_characters_in_keys_and_ids() -> None:
    """NUL and lone surrogates are refused in keys and every id with the same words, naming the field."""
    messages = []
    for make in (
        lambda text: validate_key(text),
        lambda text: TaskScope(text, "r", "t"),
        lambda text: AssetScope(name=text),
        lambda text: AssetScope(uri=text),
    ):
        for text in ("a\x00b", "a\ud800b"):
            with pytest.raises(ValueError, match=" contains ") as info:
                make(text)
            messages.append(str(info.value).partition(" contains ")[2])
    assert set(messages) == {
        "a NUL character (\\x00) at position 1; no store can hold it (PostgreSQL text and Airflow's database "
        "refuse it): remove or replace it",
        "a lone surrogate '\\ud800' at position 1, which is not valid Unicode and cannot be stored as UTF-8: "
        "decode the text it came from correctly",
    }


@pytest.mark.parametrize("text", ["\x01\x1f\x7f", "\uffff\ufffe", "\U0010ffff", "\ufeffbom", "\u202eltr", "e\u0301"])
def test_every_other_character_is_legal(text: str) -> None:
    assert validate_key(text) == text
    assert TaskScope(text, text, text).dag_id == text
    assert AssetScope(name=text, uri=text).uri == text
    assert decode_segment(encode_segment(text)) == text


def test_asset_identity_is_name_else_uri_else_id() -> None:
    assert asset_identity(AssetScope(asset_id=3, name="n", uri="u")) == ("name", "n")
    assert asset_identity(AssetScope(asset_id=3, uri="u")) == ("uri", "u")
    assert asset_identity(AssetScope(asset_id=3)) == ("id", "3")
    assert scope_path(AssetScope(asset_id=3, name="n/1", uri="u")) == ("asset", "name", "n%2F1")
    assert scope_path(AssetScope(asset_id=3, uri="s3://b")) == ("asset", "uri", "s3%3A%2F%2Fb")


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


def nested(depth: int) -> list[object]:
    """A list ``depth`` levels deep: ``[[...[1]...]]``."""
    value: list[object] = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


def stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    return depth


def test_nesting_up_to_the_limit_round_trips_even_on_a_deep_stack() -> None:
    """A value at MAX_DEPTH encodes, passes the text check and decodes with few frames to spare."""
    deepest = {"a": nested(MAX_DEPTH - 1)}
    text = encode_value(deepest)
    check_value_text(text)
    spare = MAX_DEPTH + 30

    def at_depth(target: int) -> object:
        if stack_depth() < target:
            return at_depth(target)
        return decode_value(encode_value(deepest))

    assert at_depth(sys.getrecursionlimit() - spare) == deepest


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 990, 10_000])
def test_nesting_beyond_the_limit_is_a_value_error_naming_it(depth: int) -> None:
    with pytest.raises(ValueError, match=r"value\[0\]\[0\]\[0\]\.\.\.\[0\]\[0\] is nested more than 100 levels deep"):
        encode_value(nested(depth))
    text = "[" * depth + "]" * depth
    with pytest.raises(ValueError, match="value text is nested more than 100 levels deep"):
        check_value_text(text)


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(["[" * 500, "{" * 500]),  # brackets inside strings do not nest
        json.dumps(['\\"[[[' * 200, "\\" * 300, {"a": [[["x"]]]}]),  # escaped quotes and backslashes
        json.dumps([[i] for i in range(5000)], ensure_ascii=False),  # many brackets, shallow
        json.dumps({"ü🎉": ["[é]" * 100]}, ensure_ascii=False),
    ],
)
def test_text_check_counts_only_real_nesting(text: str) -> None:
    check_value_text(text)


def test_value_text_refuses_nul_and_lone_surrogates() -> None:
    with pytest.raises(ValueError, match="value text contains a NUL character"):
        check_value_text('"a\x00"')
    with pytest.raises(ValueError, match="value text contains a lone surrogate"):
        check_value_text('"\ud800"')
    check_value_text(json.dumps("a\x00b"))  # JSON escapes it: \u0000


def test_lone_surrogates_in_values_round_trip_as_escapes() -> None:
    value = {"path": "caf\udce9", "ok": "é"}
    text = encode_value(value)
    check_value_text(text)
    assert text.isascii()
    assert decode_value(text) == value


def test_backends_refuse_edge_values_and_expiries_before_writing() -> None:
    backend = MemoryStoreBackend(config=Config.from_dict({}))
    scope = TaskScope("d", "r", "t")
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    for value in (deep, '"\x00"', '"\ud800"'):
        with pytest.raises(ValueError, match="value text"):
            backend.set(scope, "k", value)
    for outside in (
        datetime(1970, 1, 1, 0, 0, 0, 999999, tzinfo=timezone.utc),
        datetime(9999, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc),
    ):
        with pytest.raises(ValueError, match=r"between 1970-01-01T00:00:01\+00:00 .* and 9999-01-01T00:00:00\+00:00"):
            backend.set(scope, "k", "1", expires_at=outside)
    assert backend.keys(scope) == []
    backend.set(scope, "k", "1", expires_at=datetime(9999, 1, 1, tzinfo=timezone.utc))
    assert backend.get(scope, "k") == "1"


def test_foreign_text_too_deep_to_parse_is_a_value_error_not_a_recursion_error(tmp_path: Path) -> None:
    """Text another program wrote, deeper than json.loads can recurse, is refused with a clear error."""
    text = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(ValueError, match=r"nested too deep for Python's JSON parser.*other software wrote it"):
        decode_value(text)
    backend = MemoryStoreBackend()
    backend._set(TaskScope("dag", "run", "task"), "deep", text, None, None)  # as another program would: unchecked
    store = StateStore(backend, LocalStoreBackend(tmp_path), config=Config.from_dict({}))
    with pytest.raises(ValueError, match="nested too deep"):
        store.task_store("dag", "run", "task").get("deep")
    store.task_store("dag", "run", "task").delete("deep")  # it names no worker value: the row just goes
    assert store.task_store("dag", "run", "task").keys() == []
