"""Property tests of the Redactor: no PAN or secret survives, idempotent, harmless text kept."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tillbridge.observability.redaction import MARKER, MIN_SECRET_LEN, Redactor


def _luhn_complete(body: str) -> str:
    """``body`` plus the check digit that makes it Luhn-valid."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


@st.composite
def pans(draw: st.DrawFn) -> str:
    """A Luhn-valid PAN of 13-19 digits, plain or grouped by 4 with spaces or dashes."""
    length = draw(st.integers(13, 19))
    body = draw(st.text(alphabet=string.digits, min_size=length - 1, max_size=length - 1))
    pan = _luhn_complete(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    if not sep:
        return pan
    return sep.join(pan[i : i + 4] for i in range(0, len(pan), 4))


# Arbitrary text, except that it may not glue more ASCII digits onto the PAN: a PAN is a whole
# number, "54111111111111111" is another (longer) number.
_filler = st.text(max_size=40)
_before = _filler.filter(lambda s: not s[-1:].isascii() or not s[-1:].isdigit())
_after = _filler.filter(lambda s: not s[:1].isascii() or not s[:1].isdigit())

_secret_alphabet = string.ascii_letters + string.digits + "-_.:/+=!#$%&"
secrets_ = st.text(alphabet=_secret_alphabet, min_size=MIN_SECRET_LEN, max_size=24).filter(
    lambda s: s not in MARKER
)


@settings(max_examples=400)
@given(before=_before, pan=pans(), after=_after)
def test_a_pan_never_survives(before: str, pan: str, after: str) -> None:
    out = Redactor().redact_text(before + pan + after)
    assert pan not in out


@settings(max_examples=200)
@given(pan=pans(), key=st.sampled_from(["pan", "note", "card", "x"]))
def test_a_pan_never_survives_in_structures(pan: str, key: str) -> None:
    out = Redactor().redact({key: [pan, {"inner": f"see {pan}"}], "n": (pan,)})
    assert pan not in repr(out)


@settings(max_examples=300)
@given(
    secrets=st.lists(secrets_, min_size=1, max_size=4),
    pieces=st.lists(st.one_of(_filler, st.integers(0, 3)), max_size=8),
)
def test_output_never_contains_a_configured_secret(secrets: list[str], pieces: list[Any]) -> None:
    # integers pick a secret to splice in, so every example contains secrets somewhere
    text = "".join(secrets[p % len(secrets)] if isinstance(p, int) else p for p in pieces)
    text += secrets[0]
    out = Redactor(secrets).redact_text(text)
    for secret in secrets:
        assert secret not in out


_fragments = st.sampled_from(
    [
        "password=",
        "Authorization: Bearer ",
        '"cvv": "',
        "'token': '",
        " Basic dXNlcjpwYXNz",
        "://u:p@h",
        ";",
        "=2512101",
        "%B",
        "^",
        " ",
        "-",
        MARKER,
        "*",
    ]
)
_mixed = st.lists(
    st.one_of(_filler, pans(), _fragments, secrets_, st.text(string.digits, max_size=8)),
    max_size=10,
).map("".join)


@settings(max_examples=400)
@given(text=_mixed, secrets=st.lists(secrets_, max_size=3))
def test_redact_text_is_idempotent(text: str, secrets: list[str]) -> None:
    r = Redactor(secrets)
    once = r.redact_text(text)
    assert r.redact_text(once) == once


_json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), _mixed),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(_mixed, _fragments, st.sampled_from(["cvv", "pan"])), children),
    ),
    max_leaves=12,
)


@settings(max_examples=200)
@given(obj=_json_like)
def test_redact_is_idempotent_on_structures(obj: Any) -> None:
    r = Redactor(["whsec_0123456789"])
    once = r.redact(obj)
    assert r.redact(once) == once


# Text with nothing sensitive: words without any letter that starts a sensitive keyword, short
# numbers separated by words, punctuation. Must come back unchanged (the very same object).
_safe_letters = "adefghlmnoqruvwxyz"
_safe_word = st.text(alphabet=_safe_letters + _safe_letters.upper(), min_size=1, max_size=10)
_safe_number = st.integers(0, 999_999).map(str)
_safe_punct = st.sampled_from([" ", ", ", ". ", ": ", " = ", "/", "\n", "(", ")", "_", "-"])


@settings(max_examples=300)
@given(
    parts=st.lists(
        st.tuples(_safe_word, _safe_punct, st.one_of(st.just(""), _safe_number)), max_size=12
    )
)
def test_non_sensitive_text_is_unchanged(parts: list[tuple[str, str, str]]) -> None:
    text = "".join(f"{w}{p}{n} " for w, p, n in parts)
    assert Redactor(["S3CRET-VALUE"]).redact_text(text) is text
