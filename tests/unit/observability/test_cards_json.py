"""Property tests of :func:`mask_card_data_json`: valid JSON in, valid JSON of the same shape
out, no card number left anywhere, and a document without card data returned untouched."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tillbridge.observability.cards import (
    has_card_data,
    is_card_data_key,
    luhn_valid,
    mask_card_data_json,
)


def _luhn_complete(body: str) -> str:
    for d in string.digits:
        if luhn_valid(body + d):
            return body + d
    raise AssertionError("unreachable")


pans = st.integers(13, 19).flatmap(
    lambda n: st.text(string.digits, min_size=n - 1, max_size=n - 1).map(_luhn_complete)
)
texts = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda a, p, b: f"{a} {p} {b}",
        st.text("abc :", max_size=5),
        pans,
        st.text("xyz", max_size=5),
    ),
)
keys = st.one_of(
    st.text(max_size=12), st.sampled_from(["cvv", "cardSecurityCode", "pin", "track2"])
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), pans.map(int), texts,
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


def _strings_and_ints(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [*value.keys(), *(x for v in value.values() for x in _strings_and_ints(v))]
    if isinstance(value, list):
        return [x for v in value for x in _strings_and_ints(v)]
    return [value]


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return None


def _has_any(value: Any, under_card_key: bool = False) -> bool:
    if isinstance(value, dict):
        return any(has_card_data(k) or _has_any(v, is_card_data_key(k)) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_any(v) for v in value)
    if under_card_key and isinstance(value, str | int | float) and not isinstance(value, bool):
        return True
    if isinstance(value, str):
        return has_card_data(value)
    if isinstance(value, int) and not isinstance(value, bool):
        digits = str(abs(value))
        return 13 <= len(digits) <= 19 and luhn_valid(digits)
    if isinstance(value, float):
        digits = json.dumps(value).lstrip("-").split(".")[0].split("e")[0]
        return 13 <= len(digits) <= 19 and luhn_valid(digits)
    return False


@settings(max_examples=300, deadline=None)
@given(documents, st.sampled_from([(",", ":"), (", ", ": "), None]))
def test_masked_documents_are_valid_json_of_the_same_shape_without_card_data(
    doc: Any, separators: tuple[str, str] | None
) -> None:
    text = (
        json.dumps(doc, indent=2, ensure_ascii=False)
        if separators is None
        else json.dumps(doc, separators=separators)
    )
    masked = mask_card_data_json(text)
    out = json.loads(masked)
    assert _shape(out) == _shape(doc)
    for value in _strings_and_ints(out):
        if isinstance(value, str):
            assert not has_card_data(value), (text, masked)
        elif isinstance(value, int) and not isinstance(value, bool):
            digits = str(abs(value))
            assert not (13 <= len(digits) <= 19 and luhn_valid(digits)), (text, masked)
    if not _has_any(doc):
        assert masked is text


def test_escaped_digits_are_found() -> None:
    text = json.dumps({"n": "4111111111111111"}, ensure_ascii=True).replace("4", "\\u0034")
    assert json.loads(mask_card_data_json(text)) == {"n": "411111******1111"}
