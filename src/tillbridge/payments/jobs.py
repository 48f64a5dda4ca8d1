"""The payment engine's job kinds, keys, payloads and retry policy, in one place.

* ``payment.execute``: send an operation once (:meth:`PaymentEngine.execute`);
* ``payment.recover``: one status query for an unknown outcome (:class:`~.recovery.Recovery`);
* ``payment.apply``: commit a result that arrived later, from a notification or a return
  (:meth:`PaymentEngine.apply`).

``execute`` and ``recover`` talk to the counterpart and are keyed by its lease
(:meth:`FamilyRuntime.job_key`), so jobs that talk to one terminal, or concern one online
payment, never run at once; their payload names the connector so the job can take the lease
before it reads anything. ``apply`` never talks to the counterpart and is not keyed: a
notification must not wait behind a status query scheduled a minute ahead, and the payment's
version check already serializes it with every other change.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from tillbridge.domain.states import OperationKind, Outcome
from tillbridge.money import Money
from tillbridge.payments.contract import ConnectorResult
from tillbridge.queue import RetryPolicy

EXECUTE_JOB: Final = "payment.execute"
RECOVER_JOB: Final = "payment.recover"
APPLY_JOB: Final = "payment.apply"

#: Kinds of the earlier terminal engine, still accepted so jobs queued before an upgrade run.
LEGACY_EXECUTE_JOBS: Final = ("terminal.execute",)
LEGACY_RECOVER_JOBS: Final = ("terminal.recover",)

#: Errors outside the outcome taxonomy (the database went away mid-job): a few quick retries,
#: then the dead letter, where an operator sees them. A busy terminal retries without using
#: attempts. No per-attempt timeout: a card payment legitimately runs minutes; leases heartbeat.
PAYMENT_RETRY: Final = RetryPolicy(
    max_attempts=6, base_delay=timedelta(seconds=1), max_delay=timedelta(minutes=2)
)


def operation_payload(payment_id: str, operation_id: str, connector: str) -> dict[str, str]:
    return {"payment_id": payment_id, "operation_id": operation_id, "connector": connector}


def apply_payload(
    payment_id: str, operation_id: str, result: ConnectorResult, *, actor: str
) -> dict[str, Any]:
    """The payload of a ``payment.apply`` job (enqueue it without a key)."""
    return {
        "payment_id": payment_id,
        "operation_id": operation_id,
        "result": result_payload(result),
        "actor": actor,
    }


_RESULT_FIELDS: Final = (
    "reference", "provider_reference", "masked_pan", "card_type", "card_name", "trace_number",
    "receipt_number", "terminal_id", "vu_number", "auth_code", "result_code", "result_text",
    "echo_id", "detail",
)  # fmt: skip


def result_payload(result: ConnectorResult) -> dict[str, Any]:
    """``result`` as JSON for a ``payment.apply`` job (no card data beyond the masked PAN)."""
    out: dict[str, Any] = {"outcome": str(result.outcome), "reached": result.reached}
    if result.kind is not None:
        out["kind"] = str(result.kind)
    if result.amount is not None:
        out["amount"] = {"minor": result.amount.minor, "currency": result.amount.currency}
    for name in _RESULT_FIELDS:
        value = getattr(result, name)
        if value is not None:
            out[name] = value
    if result.customer_receipt:
        out["customer_receipt"] = list(result.customer_receipt)
    if result.merchant_receipt:
        out["merchant_receipt"] = list(result.merchant_receipt)
    return out


def result_from_payload(data: dict[str, Any]) -> ConnectorResult:
    amount = data.get("amount")
    return ConnectorResult(
        Outcome(data["outcome"]),
        kind=OperationKind(data["kind"]) if data.get("kind") else None,
        amount=Money(int(amount["minor"]), str(amount["currency"])) if amount else None,
        customer_receipt=tuple(data.get("customer_receipt", ())),
        merchant_receipt=tuple(data.get("merchant_receipt", ())),
        reached=bool(data.get("reached", True)),
        **{name: data[name] for name in _RESULT_FIELDS if data.get(name) is not None},
    )
