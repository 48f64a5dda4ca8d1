"""Deciding whether the PT's *last* transaction is the one whose outcome we lost.

ZVT can only repeat the last transaction's Status-Information (Repeat Receipt 06 20, service
byte bit 0). This module is the pure part of recovery: given what the bridge persisted
(:class:`~.requests.StatusQuery`) and what the PT repeated, say
``succeeded``, ``declined`` or ``unknown``. It errs towards ``unknown``: a wrong
``succeeded`` hands out goods unpaid, a wrong ``declined`` invites a second charge.
"""

from __future__ import annotations

from dataclasses import dataclass

from tillbridge.connectors.terminals.zvt import codes
from tillbridge.connectors.terminals.zvt.messages import StatusInformation
from tillbridge.connectors.terminals.zvt.requests import StatusQuery
from tillbridge.domain.states import Outcome


def _num(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


@dataclass(frozen=True, slots=True)
class Match:
    outcome: Outcome
    reason: str
    matched: bool = False
    """True when the PT's last transaction is the queried one (its data describes ours)."""


def match_last(query: StatusQuery, last: StatusInformation | None) -> Match:
    """Match the PT's last transaction against ``query``.

    Rules, in order:

    * no last transaction -> ``unknown`` (the PT may have lost or never stored it);
    * the last transaction *is* the one before ours (trace == ``previous_echo_id``) -> ours
      never got booked -> ``declined``;
    * amount differs -> ``unknown`` (someone else's transaction is the last one);
    * a known trace or receipt number differs -> ``unknown``;
    * no identifier known at all, and the trace is not exactly ``previous_echo_id + 1`` ->
      ``unknown`` (an amount alone cannot tell two sales of 10.00 apart);
    * otherwise it is ours: result code 00 -> ``succeeded``, anything else -> ``declined``.
    """
    if last is None:
        return Match(Outcome.UNKNOWN, "the terminal reported no last transaction")
    trace = _num(last.trace)
    previous = _num(query.previous_echo_id)
    if previous is not None and trace == previous:
        return Match(
            Outcome.DECLINED,
            "the terminal's last transaction is the one before this; this one was never booked",
        )
    if last.amount is not None and last.amount != query.amount.minor:
        return Match(Outcome.UNKNOWN, "the terminal's last transaction has a different amount")
    echo = _num(query.echo_id)
    if echo is not None and trace != echo:
        return Match(Outcome.UNKNOWN, "the terminal's last transaction has another trace number")
    receipt = _num(query.receipt_number)
    if receipt is not None and _num(last.receipt_number) != receipt:
        return Match(Outcome.UNKNOWN, "the terminal's last transaction has another receipt number")
    identified = echo is not None or receipt is not None
    if not identified and (previous is None or trace != previous + 1):
        return Match(
            Outcome.UNKNOWN,
            "no trace or receipt number to match the terminal's last transaction against",
        )
    rc = last.result_code if last.result_code is not None else codes.APPROVED
    if rc == codes.APPROVED:
        return Match(Outcome.SUCCEEDED, "matched the terminal's last transaction (approved)", True)
    text = codes.result_text(rc)
    return Match(Outcome.DECLINED, f"matched the terminal's last transaction ({text})", True)
