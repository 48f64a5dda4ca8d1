"""The WebhookVerifier contract: Standard Webhooks verifier and the source registry."""

from __future__ import annotations

import pytest

from tillbridge.erp.xentral.verifier import XentralVerifier
from tillbridge.errors import ConfigError, NotFound, SignatureRejected
from tillbridge.inbound.verifiers import (
    StandardWebhooksVerifier,
    VerifiedEvent,
    VerifierRegistry,
    WebhookVerifier,
)
from tillbridge.webhooks_out import signing


def test_standard_webhooks_verifier_returns_the_event_id() -> None:
    secret = signing.generate_secret()
    body = b'{"type":"payment.captured"}'
    hdrs = signing.headers(secret, "evt_42", 5000, body)
    event = StandardWebhooksVerifier().verify(body, hdrs, [secret], 5000.0)
    assert event == VerifiedEvent("standard-webhooks", "evt_42", 5000, 0)


def test_standard_webhooks_verifier_tolerance_is_configurable() -> None:
    secret = signing.generate_secret()
    hdrs = signing.headers(secret, "evt_1", 5000, b"")
    with pytest.raises(SignatureRejected) as info:
        StandardWebhooksVerifier(tolerance=60).verify(b"", hdrs, [secret], 5061.0)
    assert info.value.reason == "timestamp_too_old"
    with pytest.raises(ConfigError):
        StandardWebhooksVerifier(tolerance=0)


def test_registry_is_explicit() -> None:
    xentral = XentralVerifier()
    registry = VerifierRegistry({"xentral": xentral})
    registry.register("bridge-eu", StandardWebhooksVerifier())
    assert registry.get("xentral") is xentral
    assert list(registry.sources()) == ["bridge-eu", "xentral"]
    assert "xentral" in registry
    with pytest.raises(NotFound):
        registry.get("stripe")
    with pytest.raises(ConfigError):
        registry.register("xentral", XentralVerifier())
    with pytest.raises(ConfigError):
        registry.register(" padded ", XentralVerifier())
    assert list(VerifierRegistry().sources()) == []  # no hidden global registrations


def test_implementations_satisfy_the_protocol() -> None:
    verifiers: list[WebhookVerifier] = [XentralVerifier(), StandardWebhooksVerifier()]
    assert {v.scheme for v in verifiers} == {"xentral", "standard-webhooks"}
