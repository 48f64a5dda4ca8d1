"""The one redaction step shared by the logs and the audit log (design invariant 6).

A :class:`Redactor` masks, in free text and in nested structures:

* **PANs**: 13 to 19 ASCII digits, possibly in groups separated by one space or dash, that pass
  the Luhn check. At most the first 6 and the last 4 digits stay; the rest become ``*`` in place
  (``4111111111111111`` -> ``411111******1111``; separators are kept). A PAN glued to other
  digits (``54111111111111111``) is a different, longer number and is not one.
* **Track data** (``;PAN=YYMM...?``, ``%BPAN^NAME^YYMM...?``, EMV tag 57 style ``PAN D YYMM``):
  replaced whole by :data:`MARKER`.
* **Values of sensitive keys** (see :func:`is_sensitive_key`): authorization headers, cookies,
  API keys, signatures, passwords, secrets, tokens, CVV/CVC/CSC, track data, PIN blocks. In
  structures the value is replaced; in text ``key=value``, ``key: value``, ``"key": "value"``
  (also JSON escaped inside a JSON string) and ``'key': 'value'`` are recognised.
* ``Bearer <token>`` anywhere, ``Basic <credentials>`` when the credentials decode as
  ``user:password``, and the password of ``scheme://user:password@host`` URLs.
* **Configured secret values**, as exact substrings, longest first. Values shorter than
  :data:`MIN_SECRET_LEN` characters, and substrings of :data:`MARKER`, are ignored: they would
  mangle every line (or, for the latter, could never be removed).

Contract: :meth:`Redactor.redact_text` is idempotent (``f(f(x)) == f(x)``) and never raises on
any ``str``. Text with nothing sensitive is returned unchanged (the same object). The cost on a
line with nothing sensitive is a few C-level regex scans; the Luhn work only starts when the
text holds at least 12 digits close together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from tillbridge.observability._keys import MARKER, is_sensitive_key, redact_key_values
from tillbridge.observability.cards import luhn_valid, mask_card_data

if TYPE_CHECKING:
    from tillbridge.settings import Settings

__all__ = ["MARKER", "MIN_SECRET_LEN", "Redactor", "is_sensitive_key", "luhn_valid"]

#: Configured secrets shorter than this are ignored (a 3-character "secret" would mask noise).
MIN_SECRET_LEN: Final = 4
#: Nesting depth after which :meth:`Redactor.redact` stops recursing and redacts ``str(obj)``.
MAX_DEPTH: Final = 32
#: Passes of the text pipeline before giving up and returning :data:`MARKER` (see redact_text).
MAX_PASSES: Final = 4


class Redactor:
    """Masks card data and secrets in text and nested structures; see the module docstring.

    ``Redactor(["s3cr3t-api-key"]).redact_text("key s3cr3t-api-key")`` -> ``"key [REDACTED]"``.

    **Parameters:** ``secrets``: exact values to mask anywhere (API keys, webhook secrets,
    passwords from the configuration). Build one per process and share it: the logging set-up
    and the audit log must use the same instance so that both hide the same things.
    """

    __slots__ = ("_secret_re",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        usable = {s for s in secrets if len(s) >= MIN_SECRET_LEN and s not in MARKER}
        # Longest first so that a secret containing another one is masked whole.
        ordered = sorted(usable, key=lambda s: (-len(s), s))
        self._secret_re: re.Pattern[str] | None = (
            re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None
        )

    @classmethod
    def from_settings(cls, settings: Settings, extra: Iterable[str] = ()) -> Redactor:
        """A redactor for ``settings.redact_values``, the database password (if the URL has
        one) and ``extra``."""
        values = [v.get_secret_value() for v in settings.redact_values]
        password = _url_password(settings.database_url)
        if password:
            values.append(password)
        values.extend(extra)
        return cls(values)

    def redact_text(self, text: str) -> str:
        """``text`` with every PAN, track, secret and sensitive ``key=value`` masked.

        The rules are applied as one pass; a pass can expose what an earlier rule of the same
        pass would have caught (a masked run leaves shorter groups behind, a removed secret
        joins its neighbours), so passes repeat until nothing changes. Real text settles in
        one or two passes; if crafted input is still changing after :data:`MAX_PASSES`, the
        whole text becomes :data:`MARKER`, which bounds the cost and keeps the result stable.
        """
        if not text:
            return text
        current = self._pass(text)
        if current is text:
            return text
        for _ in range(MAX_PASSES - 1):
            following = self._pass(current)
            if following == current:
                return current
            current = following
        return MARKER

    def _pass(self, text: str) -> str:
        # Card data first: a track must go whole before a key rule takes part of it.
        out = redact_key_values(mask_card_data(text))
        if self._secret_re is not None:
            # Last, so that nothing rewritten above can re-create a configured secret.
            out = self._secret_re.sub(MARKER, out)
        # Hand back the very same object when nothing changed: callers use ``is`` as a fast path.
        return text if out == text else out

    def redact(self, obj: Any) -> Any:
        """A redacted copy of ``obj``; the input is never modified.

        ``str`` -> :meth:`redact_text`; mappings -> ``dict`` (keys redacted as text, the value
        of a sensitive key replaced by :data:`MARKER` unless it is ``None`` or empty); lists,
        tuples, sets keep their kind; ``None``, ``bool`` and ``float`` pass through; an ``int``
        that is a PAN becomes its masked string; any other object becomes its redacted
        ``str()`` (that is how a log renderer or a JSON column would show it anyway).
        """
        return self._redact(obj, 0)

    def _redact(self, obj: Any, depth: int) -> Any:
        if isinstance(obj, str):
            return self.redact_text(obj)
        if obj is None or isinstance(obj, (bool, float)):
            return obj
        if isinstance(obj, int):
            if -(10**12) < obj < 10**12:
                return obj
            as_text = str(obj)
            redacted = self.redact_text(as_text)
            return obj if redacted is as_text else redacted
        if depth >= MAX_DEPTH:
            return self.redact_text(str(obj))
        if isinstance(obj, Mapping):
            return {self._redact_key(k): self._redact_item(k, v, depth + 1) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self._redact(v, depth + 1) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self._redact(v, depth + 1) for v in obj)
        if isinstance(obj, (set, frozenset)):
            return type(obj)(self._redact(v, depth + 1) for v in obj)
        return self.redact_text(str(obj))

    def _redact_key(self, key: Any) -> Any:
        return self.redact_text(key) if isinstance(key, str) else key

    def _redact_item(self, key: Any, value: Any, depth: int) -> Any:
        if (
            isinstance(key, str)
            and value is not None
            and value != ""
            and (is_sensitive_key(key) or is_sensitive_key(self.redact_text(key)))
        ):
            return MARKER
        return self._redact(value, depth)


def _url_password(url: str) -> str | None:
    m = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*:(?P<pw>[^/\s@]+)@", url)
    return m["pw"] if m else None
