"""PII scrubbing: what an external platform must never see, and what it must still see."""

from __future__ import annotations

import time

import pytest

from nectar.notifications.channels.base import EventType
from nectar.notifications.pii import iban_valid, luhn_valid, scrub, scrub_delivery, scrub_view
from tests.notifications.platforms import delivery, view


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write to ada.lovelace+billing@example.co.uk today", "Write to [email] today"),
        ("ADA@EXAMPLE.COM.", "[email]."),
        ("mail: jörg@bücher.example.de", "mail: [email]"),
    ],
)
def test_emails(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "number",
    [
        "4111 1111 1111 1111",  # Visa test number, grouped
        "4111-1111-1111-1111",
        "4111111111111111",
        "5555 5555 5555 4444",  # Mastercard
        "3782 822463 10005",  # Amex 4-6-5
        "6011 0009 9013 9424",  # Discover
        "4222222222222",  # 13 digits
        "6304 0000 0000 0000 018",  # Maestro, 19 digits
    ],
)
def test_card_numbers_that_pass_luhn(number: str) -> None:
    assert scrub(f"My card is {number}, please refund.") == "My card is [card], please refund."


def test_a_card_inside_a_run_of_numbers() -> None:
    assert scrub("order 12 4111 1111 1111 1111 2024") == "order 12 [card] 2024"
    assert scrub("4111 1111 1111 1111 and 5555 5555 5555 4444") == "[card] and [card]"
    assert scrub("card 4111 1111 1111 1111 1.5 GB") == "card [card] 1.5 GB"


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "4111111111111112",
        "tracking 1234567890123456",  # 16 digits, Luhn fails
        "12 34 56 78 90 12 34 5",  # short groups are not how cards are written
        "order 123456789012",  # 12 digits: too short for a card
    ],
)
def test_numbers_that_are_not_cards_stay(text: str) -> None:
    assert not luhn_valid("4111111111111112")
    assert scrub(text) == text


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "gb82 west 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
        "BE68 5390 0754 7034",  # 16 characters, among the shortest
    ],
)
def test_ibans_that_pass_mod_97(iban: str) -> None:
    assert scrub(f"Refund to {iban} please.") == "Refund to [iban] please."


def test_ibans_that_fail_mod_97_stay() -> None:
    assert not iban_valid("DE89 3704 0044 0532 0130 01")
    for text in ("IBAN DE89 3704 0044 0532 0130 01", "model AB12 CDEF GHIJ KLMN"):
        assert scrub(text) == text


def test_an_iban_after_a_word_that_looks_like_one() -> None:
    assert scrub("ab12 DE89370400440532013000 is mine") == "ab12 [iban] is mine"


def test_an_iban_with_hardly_any_digits_is_still_found() -> None:
    # Its check digits and a BBAN of letters: no more digits than "1 user message" holds.
    assert iban_valid("GB65WESTABCDEFGHIJKL")
    assert scrub("Pay GB65WESTABCDEFGHIJKL, 1 user message") == "Pay [iban], 1 user message"
    assert scrub("The user wrote: 1 user message") == "The user wrote: 1 user message"


def test_ssns() -> None:
    assert scrub("SSN 123-45-6789.") == "SSN [ssn]."
    # Areas 000, 666 and 900-999, group 00 and serial 0000 are never issued.
    for invalid in ("000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000"):
        assert scrub(f"id {invalid}") == f"id {invalid}"
    assert scrub("ref 1123-45-6789-2") == "ref 1123-45-6789-2"


@pytest.mark.parametrize(
    "phone",
    [
        "+1 (415) 555-2671",
        "+1 415 555 2671",
        "+44 20 7946 0958",
        "+49 30 12345678",
        "+4915112345678",
        "+33 1 23 45 67 89",
        "+49 (0)30 12345678",
        "0044 20 7946 0958",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "415 555 2671",
        "1-800-555-0199",
        "020 7946 0958",
        "07700 900123",
        "07700900123",
        "06 12 34 56 78",
        "030 12345678",
        "0171 1234567",
    ],
)
def test_phone_numbers(phone: str) -> None:
    assert scrub(f"Reach me on {phone}, thanks") == "Reach me on [phone], thanks"


def test_phone_numbers_announced_by_a_word() -> None:
    assert scrub("call me at 555-1234 tomorrow") == "call me at [phone] tomorrow"
    assert scrub("my phone: 4155552671.") == "my phone: [phone]."
    assert scrub("Mobile number is 1234 5678 90") == "Mobile number is [phone]"
    assert scrub("WhatsApp +1 555 0100 200") == "WhatsApp [phone]"


def test_a_phone_number_followed_by_another_number() -> None:
    assert scrub("+44 20 7946 0958 2024") == "[phone] 2024"


@pytest.mark.parametrize(
    "text",
    [
        "version 2.14.3",
        "Ubuntu 20.04",
        "$15 per user",
        "it costs 1,299.00 EUR or +15%",
        "10 GB of storage",
        "order 12345",
        "order #123456 and ORD-654321",
        "from 1999 to 2024 we sold 1500 units",
        "2024-01-15",
        "15/01/2024",
        "15.01.2024",
        "on 05-06-2024 10:30",
        "2024-01-15T10:30:00Z",
        "2026-11-22T07:08:15.592495+00:00",  # an event's occurred_at
        "2024-01-15 10:30",
        "at 10:30:45",
        "call me on 15.01.2024",
        "call 2.14.3 the stable one",
        "call about order 1234567",
        "IP 192.168.1.1 or 203.0.113.195",
        "id 123e4567-e89b-12d3-a456-426614174000",
        "unix time 1700000000",
        "INC0012345",
        "Room 101, floor 3, building 12",
        "3+4=7",
        "ref 2024 0001 2345",
        "555-1234",  # a bare local number, nothing announces it
        "a Tel Aviv office with 2024 staff",
    ],
)
def test_what_is_not_pii_stays(text: str) -> None:
    assert scrub(text) == text


def test_scrubbing_twice_changes_nothing() -> None:
    text = "ada@example.com +44 20 7946 0958 4111 1111 1111 1111 DE89370400440532013000 123-45-6789"
    once = scrub(text)
    assert once == "[email] [phone] [card] [iban] [ssn]"
    assert scrub(once) == once


def test_hostile_input_is_scrubbed_in_linear_time() -> None:
    started = time.perf_counter()
    for text in (
        "1" * 50_000 + "x",
        "+1 " + "2 " * 20_000 + "x",
        "a@" * 20_000,
        "DE12 " * 20_000,
        "1234 " * 20_000,
        "call " * 10_000 + "1 " * 10_000,
    ):
        scrub(text)
    assert time.perf_counter() - started < 5


def test_scrub_view_covers_every_free_text_field() -> None:
    original = view(
        summary="Ada (ada@example.com) wants a refund to DE89370400440532013000.",
        user_name="ada@example.com",
        assignee_name="carol@corp.example",
        resolution_notes="Refunded card 4111 1111 1111 1111; called +44 20 7946 0958.",
        transcript=[
            {"role": "user", "content": "My SSN is 123-45-6789"},
            {"role": "assistant", "content": "Please do not share that."},
        ],
    )
    scrubbed = scrub_view(original)
    assert scrubbed.summary == "Ada ([email]) wants a refund to [iban]."
    assert scrubbed.user_name == "[email]"
    assert scrubbed.assignee_name == "[email]"
    assert scrubbed.resolution_notes == "Refunded card [card]; called [phone]."
    assert scrubbed.transcript == [
        {"role": "user", "content": "My SSN is [ssn]"},
        {"role": "assistant", "content": "Please do not share that."},
    ]
    # Everything else is untouched, and the original is not modified.
    assert (scrubbed.id, scrubbed.url, scrubbed.urgency) == (original.id, original.url, "high")
    assert original.user_name == "ada@example.com"


def test_scrub_delivery_covers_the_event_data() -> None:
    sample = delivery(
        EventType.cancelled,
        view(summary="call +44 20 7946 0958"),
        "zendesk",
        data={"why": "duplicate of ada@example.com's request", "by": "Bob", "n": 3},
    )
    scrubbed = scrub_delivery(sample)
    assert scrubbed.data == {"why": "duplicate of [email]'s request", "by": "Bob", "n": 3}
    assert scrubbed.handoff is not None and scrubbed.handoff.summary == "call [phone]"
    assert scrub_delivery(delivery(EventType.test, None, "webhook")).handoff is None
