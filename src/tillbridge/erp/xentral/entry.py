"""The ``xentral`` ERP type: its config model and what it adds to a runtime.

``[erp.NAME] type = "xentral"`` makes ``NAME`` a webhook account (``/webhooks/xentral/NAME``,
verified with its ``webhook_secrets``) whose POS card payments start payments on the register's
terminal, and whose captured payments are written back to the Xentral invoice (``url``,
``api_key``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from pydantic import Field, HttpUrl

from tillbridge.config import ErpConfig, SecretRef
from tillbridge.erp.parts import ErpContext, ErpParts, ErpType, InboundSource, JobKind
from tillbridge.erp.xentral.source import SOURCE, XentralSource
from tillbridge.erp.xentral.sync import (
    WRITEBACK_JOB,
    WRITEBACK_RETRY,
    XentralSync,
    writeback_listener,
)
from tillbridge.erp.xentral.verifier import XentralVerifier
from tillbridge.inbound.intake import SecretSource
from tillbridge.payments.ledger import PaymentListener

#: Xentral's own rule for a webhook signature key (its UI generates 20 characters, or takes
#: your own of 20 to 255): a shorter or longer one cannot be the key Xentral signs with.
SIGNATURE_KEY_CHARS: Final = (20, 255)


class XentralSignatureKey(SecretRef):
    """A Xentral webhook signature key: 20 to 255 characters."""

    def check(self, value: str) -> str | None:
        low, high = SIGNATURE_KEY_CHARS
        if not low <= len(value) <= high:
            return (
                f"is {len(value)} characters long; Xentral signature keys are {low} to {high} "
                "characters (copy the whole key Xentral showed when the webhook was created)"
            )
        return None


class XentralConfig(ErpConfig):
    """``[erp.NAME] type = "xentral"``."""

    type: Literal["xentral"] = "xentral"
    url: HttpUrl
    api_key: SecretRef
    #: The webhook signature key(s). Several during a key rotation; any one that verifies is
    #: accepted. Without any, every delivery to this account is refused (401).
    webhook_secrets: list[XentralSignatureKey] = Field(default_factory=list, max_length=5)


def _listeners(entries: Mapping[str, Any]) -> Sequence[PaymentListener]:
    return (writeback_listener,) if entries else ()


def _build(entries: Mapping[str, Any], ctx: ErpContext) -> ErpParts:
    accounts: dict[str, XentralConfig] = dict(entries)
    sync = XentralSync(ctx.db, accounts, ctx.outbound)
    source = InboundSource(
        source=SOURCE,
        verifier=XentralVerifier(tolerance=ctx.inbound.tolerance_s),
        accounts={
            name: SecretSource(cfg.webhook_secrets, ctx.inbound.secret_ttl_s)
            for name, cfg in accounts.items()
        },
        processor=XentralSource(ctx.engine, ctx.config),
    )
    return ErpParts(
        sources=(source,),
        jobs=(JobKind(WRITEBACK_JOB, sync.run, WRITEBACK_RETRY),),
        closers=(sync.aclose,),
        services={"xentral": sync},
    )


XENTRAL_TYPE: Final = ErpType(
    name="xentral",
    model=XentralConfig,
    summary="Xentral POS card-payment webhooks in, invoice payment status back (API v3)",
    listeners=_listeners,
    build=_build,
)
