"""One secret-name rule for logs, the audit log, HTTP headers and query parameters.

Until they were merged there were two rules: the log redactor's ``is_sensitive_key`` and the
outbound client's ``is_secret_name`` (header and query names). Both are copied here as they
stood, and the one rule must catch every name either caught, except two names the log rule
deliberately kept readable (``token_type``, ``signature_valid``: an OAuth token type such as
"Bearer" and a boolean).
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillbridge.observability.redaction import is_sensitive_key
from tillbridge.outbound.redact import REDACTED, redact_headers, redact_url

# --- the two rules as they were --------------------------------------------------------------

OLD_HTTP_EXACT = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-avangate-authentication",
    }
)
OLD_HTTP_MARKERS = ("signature", "secret", "token", "password", "passwd", "api_key", "apikey")


def old_http_rule(name: str) -> bool:
    low = name.strip().lower()
    return low in OLD_HTTP_EXACT or any(marker in low for marker in OLD_HTTP_MARKERS)


OLD_LOG_EXACT = frozenset(
    "auth pwd token signature pin pinblock pincode cvv cvc cvv2 cvc2 cvn csc cav2 securitycode "
    "track trackdata track1 track2 track3 track1data track2data track3data".split()
)
OLD_LOG_CONTAINS = (
    "password passwd passphrase secret apikey credential privatekey signingkey accesskey "
    "hmackey cookie".split()
)
OLD_LOG_ENDS = tuple(
    "authorization token signature securitycode verificationcode verificationvalue cvv cvc "
    "cvv2 cvc2 pinblock trackdata".split()
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _compact(key: str) -> str:
    last = key.rsplit(".", 1)[-1]
    return _CAMEL.sub("_", last).lower().replace("_", "").replace("-", "").replace(" ", "")


def old_log_rule(key: str) -> bool:
    compact = _compact(key)
    if not compact:
        return False
    if compact in OLD_LOG_EXACT or compact.endswith(OLD_LOG_ENDS):
        return True
    if any(fragment in compact for fragment in OLD_LOG_CONTAINS):
        return True
    return _CAMEL.sub("_", key.rsplit(".", 1)[-1]).lower().replace("-", "_").endswith("_pin")


#: The only names either rule caught that are readable now (compared in compact form).
READABLE = {"tokentype", "signaturevalid"}


def caught_before(name: str) -> bool:
    return (old_http_rule(name) or old_log_rule(name)) and _compact(name) not in READABLE


# --- every name on either list ---------------------------------------------------------------

FRAGMENTS = sorted(
    {*OLD_HTTP_EXACT, *OLD_HTTP_MARKERS, *OLD_LOG_EXACT, *OLD_LOG_CONTAINS, *OLD_LOG_ENDS}
)


def spellings(word: str) -> list[str]:
    """``word`` as a header, a query parameter, a JSON field and a dotted log key would spell it."""
    camel = re.sub(r"[-_](\w)", lambda m: m[1].upper(), word)
    return [
        word,
        word.upper(),
        word.title(),
        camel,
        f"x-{word}",
        f"X-Provider-{word.title()}",
        f"client_{word}",
        f"{word}_id",
        f"{word}-value",
        f"headers.{word}",
        f"{word}.value",
        f" {word} ",
        f"terminal_{word}",
    ]


CORPUS = sorted({s for w in FRAGMENTS for s in spellings(w)} | set(FRAGMENTS))


@pytest.mark.parametrize("name", [n for n in CORPUS if caught_before(n)])
def test_every_name_either_rule_caught_is_still_caught(name: str) -> None:
    assert is_sensitive_key(name), name


_name_chars = st.sampled_from([*FRAGMENTS, "x", "id", "type", "valid", "-", "_", ".", "A", "z"])


@given(st.lists(_name_chars, max_size=5).map("".join))
def test_no_name_caught_before_is_readable_now(name: str) -> None:
    if caught_before(name):
        assert is_sensitive_key(name), name


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_. ", max_size=30))
def test_no_random_name_caught_before_is_readable_now(name: str) -> None:
    if caught_before(name):
        assert is_sensitive_key(name), name


@pytest.mark.parametrize(
    "name", ["token_type", "tokenType", "signature_valid", "authorization_code", "Idempotency-Key"]
)
def test_the_deliberately_readable_names_stay_readable(name: str) -> None:
    assert not is_sensitive_key(name)


def test_headers_and_query_parameters_use_the_one_rule() -> None:
    names = ["X-Avangate-Authentication", "Card-Security-Code", "x-client-credential", "Pin"]
    out = redact_headers(dict.fromkeys(names, "v"))
    assert set(out.values()) == {REDACTED}  # the log rule's names: now hidden in headers too
    url = redact_url("https://api.test/x?token_id=t&passphrase=p&page=2&token_type=Bearer")
    assert url == (
        "https://api.test/x?token_id=%5Bredacted%5D&passphrase=%5Bredacted%5D&page=2"
        "&token_type=Bearer"
    )
