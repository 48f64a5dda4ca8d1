"""Receipt texts of the simulated PT (German, as most ZVT terminals print them).

The umlauts are deliberate: they exercise the CP437 / ISO-8859-1 text handling end to end.
"""

from __future__ import annotations

from tillbridge.connectors.terminals.zvt.messages import RECEIPT_ADMIN, RECEIPT_CUSTOMER

from .knobs import SimulatorKnobs
from .state import SimTransaction

_TITLES = {
    "purchase": "Kartenzahlung",
    "refund": "Gutschrift",
    "reversal": "Storno",
    "end_of_day": "Kassenschnitt",
}


def _money(minor: int) -> str:
    return f"EUR {minor // 100},{minor % 100:02d}"


def receipt_lines(txn: SimTransaction, receipt_type: int, knobs: SimulatorKnobs) -> list[str]:
    """The lines of one receipt copy (customer, merchant or administration)."""
    if receipt_type == RECEIPT_ADMIN:
        copy = "Administrationsbeleg"
    elif receipt_type == RECEIPT_CUSTOMER:
        copy = "Kundenbeleg"
    else:
        copy = "Händlerbeleg"
    lines = [
        "  TILLBRIDGE SIMULATOR",
        f"  {copy}",
        _TITLES[txn.kind],
        f"Terminal-ID {knobs.terminal_id}",
        f"Datum {txn.date[4:6]}.{txn.date[2:4]}.{txn.date[0:2]}  {txn.time[0:2]}:{txn.time[2:4]}",
        f"Trace-Nr. {txn.trace:06d}",
    ]
    if txn.kind == "end_of_day":
        lines.append(f"Summe {_money(txn.amount)}")
        return lines
    if txn.receipt is not None:
        lines.append(f"Beleg-Nr. {txn.receipt:04d}")
    lines += [
        f"{knobs.card_name}  {knobs.masked_pan}",
        f"Betrag {_money(txn.amount)}",
        "Zahlung erfolgt" if txn.result_code == 0 else "Vorgang abgebrochen / abgelehnt",
    ]
    return lines
