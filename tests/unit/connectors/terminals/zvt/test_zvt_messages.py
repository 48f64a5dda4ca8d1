"""Commands and PT messages: spec vectors, round trips, card-data hygiene, code tables."""

from __future__ import annotations

import dataclasses

import pytest

from tillbridge.connectors.terminals.zvt import bmp as B
from tillbridge.connectors.terminals.zvt import codes
from tillbridge.connectors.terminals.zvt import commands as C
from tillbridge.connectors.terminals.zvt import tlv as T
from tillbridge.connectors.terminals.zvt.apdu import PRINT_TEXT_BLOCK, Apdu, decode_apdu
from tillbridge.connectors.terminals.zvt.messages import (
    AbortMessage,
    Completion,
    IntermediateStatus,
    PrintLine,
    SchemeCount,
    StatusInformation,
    TextBlock,
    Totals,
)
from tillbridge.errors import ProtocolError
from tillbridge.observability.cards import mask_pan

# A synthetic 16-digit number, built at run time so card-number scanners do not trip on it.
FULL_PAN = "5" + "4" * 14 + "1"


def test_registration_matches_the_vendor_example() -> None:
    # "06 00 0E 12 34 56 BE 09 78 06 06 26 04 0A 02 06 D3" from the reference (§2.6).
    reg = C.Registration("123456", 0xBE, 978, None, (C.permitted_commands(PRINT_TEXT_BLOCK),))
    wire = bytes.fromhex("06000E123456BE0978060626040A0206D3")
    assert reg.to_apdu().encode() == wire
    back = C.decode_command(decode_apdu(wire))
    assert back == reg
    assert isinstance(back, C.Registration) and back.permits_text_block()
    assert C.Registration("123456", 0x08, 978).to_apdu().encode() == bytes.fromhex(
        "06000612345608 0978"
    )


@pytest.mark.parametrize(
    "cmd",
    [
        C.Registration("000000", 0xBA, 978, 0x02),
        C.Authorization(1234, 978, 30, 3, (C.receipt_sync_tlv(None),)),
        C.Authorization(1),
        C.Reversal("000000", 42, 1234, 978, (C.receipt_sync_tlv(41),)),
        C.Refund("000000", 500, 978),
        C.EndOfDay("000000"),
        C.RepeatReceipt("000000"),
        C.StatusEnquiry(),
        C.StatusEnquiry("000000", 0x00),
        C.Diagnosis(),
        C.LogOff(),
        C.AbortCommand(),
    ],
)
def test_command_round_trip(cmd: C.Command) -> None:
    assert C.decode_command(decode_apdu(cmd.to_apdu().encode())) == cmd


def test_authorization_wire_form() -> None:
    assert C.Authorization(1000, 978).to_apdu().encode() == bytes.fromhex(
        "06010A0400000000100049 0978"
    )


def test_receipt_sync_tlv_empty_when_unknown() -> None:
    assert T.encode_tlv([C.receipt_sync_tlv(None)]) == bytes.fromhex("1F1F00")
    assert C.receipt_sync_value((C.receipt_sync_tlv(None),)) == (True, None)
    assert C.receipt_sync_value((C.receipt_sync_tlv(7),)) == (True, 7)
    assert C.receipt_sync_value(()) == (False, None)


def test_bad_commands() -> None:
    with pytest.raises(ProtocolError, match="unsupported"):
        C.decode_command(Apdu(0x06, 0x93, b"\x00\x00\x00"))
    with pytest.raises(ProtocolError, match="amount"):
        C.decode_command(Apdu(0x06, 0x01, bytes.fromhex("490978")))
    with pytest.raises(ProtocolError, match="password"):
        C.decode_command(Apdu(0x06, 0x31, b"\x00"))
    with pytest.raises(ValueError):
        C.RepeatReceipt("12345").to_apdu()


def test_status_information_round_trip() -> None:
    info = StatusInformation(
        result_code=0,
        amount=1234,
        currency=978,
        trace="000123",
        time="101112",
        date="261121",
        payment_type=0x60,
        masked_pan="672559******1234",
        terminal_id="52500038",
        vu_number="SIM000000000001",
        auth_code="A00001",
        additional_text="Danke",
        receipt_number="0042",
        turnover_number="000042",
        card_type=0x05,
        card_name="girocard",
        tlv=(C.receipt_sync_tlv(42),),
    )
    assert StatusInformation.from_apdu(info.to_apdu()) == info
    assert info.receipt_sync == "0042"


def test_status_information_keeps_no_card_secrets() -> None:
    # A (misbehaving) PT sends a full PAN and track 2: only 6+4 digits survive, no track data.
    full_pan = FULL_PAN
    data = B.encode_bmps(
        [
            (0x27, b"\x00"),
            (0x22, B.pan_encode(full_pan)),
            (0x23, bytes.fromhex(FULL_PAN + "D25121")),
            (0x04, B.bcd_encode(100, 6)),
        ]
    )
    info = StatusInformation.from_apdu(Apdu(0x04, 0x0F, data))
    assert info.masked_pan == "544444******4441"
    assert not any("D2512" in str(v) for v in dataclasses.astuple(info))


def test_totals_round_trip() -> None:
    schemes = tuple(SchemeCount(i, i * 1000) for i in range(7))
    totals = Totals(1, 42, schemes)
    assert Totals.decode(totals.encode()) == totals
    with pytest.raises(ProtocolError):
        Totals.decode(b"\x00" * 10)


def test_intermediate_status_variants() -> None:
    texts = IntermediateStatus(0x0A, None, ("INSERT CARD",))
    assert IntermediateStatus.from_apdu(texts.to_apdu()) == texts
    assert IntermediateStatus.from_apdu(Apdu(0x04, 0xFF, b"\x0e")) == IntermediateStatus(0x0E)
    # A timeout byte of 06 (six minutes) is not mistaken for a TLV container.
    six = IntermediateStatus.from_apdu(Apdu(0x04, 0xFF, bytes.fromhex("0406")))
    assert six.timeout_minutes == 6
    with pytest.raises(ProtocolError):
        IntermediateStatus.from_apdu(Apdu(0x04, 0xFF, b""))


def test_print_line_attributes() -> None:
    assert PrintLine.from_apdu(PrintLine(0x00, "Händler").to_apdu()).text == "Händler"
    assert PrintLine(0x81, "x").is_last and not PrintLine(0x80, "x").is_last
    feed = PrintLine.from_apdu(Apdu(0x06, 0xD1, bytes.fromhex("FF03")))
    assert feed.lines() == ["", "", ""] and not feed.is_last
    latin = PrintLine(0x00, "Grüße").to_apdu("latin-1")
    assert PrintLine.from_apdu(latin, "latin-1").text == "Grüße"


def test_text_block_round_trip_and_long_blocks() -> None:
    lines = tuple(f"line {i} äöü" for i in range(60))  # > 255 bytes: extended APDU, 82 lengths
    block = TextBlock(0x02, lines)
    apdu = block.to_apdu()
    assert apdu.encode()[2] == 0xFF
    assert TextBlock.from_apdu(decode_apdu(apdu.encode())) == block


def test_completion_after_status_enquiry() -> None:
    done = Completion(sw_version="SW 1.2", terminal_status=0x00, terminal_id="52500038")
    back = Completion.from_apdu(done.to_apdu(), after_enquiry=True)
    assert (back.sw_version, back.terminal_status, back.terminal_id) == ("SW 1.2", 0, "52500038")
    assert Completion.from_apdu(Apdu(0x06, 0x0F, b"\xfe\x01")).unparsed


def test_abort_with_extended_error() -> None:
    abort = AbortMessage(0xFF, 0x1234, "Terminal ist blockiert")
    assert AbortMessage.from_apdu(abort.to_apdu()) == abort
    assert AbortMessage.from_apdu(Apdu(0x06, 0x1E, bytes.fromhex("6F0978"))).result_code == 0x6F
    assert AbortMessage.from_apdu(Apdu(0x06, 0x1E)).result_code == 0xFF


def test_result_code_table() -> None:
    assert codes.result_text(0x00) == "no error"
    assert codes.result_text(0x6C) == "aborted by timeout or abort key"
    assert "host" in codes.result_text(0x05) and "05" in codes.result_text(0x05)
    assert "host" in codes.result_text(0x63)
    assert codes.result_text(0x9A) == "ZVT protocol error"
    assert "unknown" in codes.result_text(0x69)
    assert codes.intermediate_text(0x0A) == "insert card"
    assert codes.intermediate_text(0x4A).endswith("please remove card")
    assert codes.currency_number("EUR") == 978 and codes.currency_alpha(978) == "EUR"


@pytest.mark.parametrize(
    ("pan", "masked"),
    [
        (FULL_PAN, "544444******4441"),
        ("672559******1234", "672559******1234"),
        ("4111 1111 1111 1111 111", "411111*********1111"),
        ("1234567890", "******7890"),
        ("1234", "****"),
    ],
)
def test_mask_pan(pan: str, masked: str) -> None:
    assert mask_pan(pan) == masked
