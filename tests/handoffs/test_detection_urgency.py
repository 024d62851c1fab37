"""How urgent a handoff is: from its reason and the user's words. Sentences written for these
tests; each is sent with a doubtful answer (so `low_confidence` fires unless another trigger
does first)."""

from __future__ import annotations

import pytest

from nectar.handoffs.detection.base import Reason, Urgency
from tests.handoffs.turns import SURE, UNSURE, converse, decide, history


def urgency_of(message: str, confidence: float = UNSURE) -> Urgency:
    decision = decide(message, confidence=confidence)
    assert decision is not None, message
    return decision.urgency


@pytest.mark.parametrize(
    "message",
    [
        # security compromise / account takeover
        "we got a login alert from Vietnam and now our admin password doesn't work, I think "
        "we were hacked",
        "Somebody signed into my account overnight and changed the recovery email",
        "an ex-contractor still has access to the finance folder and we can't remove him",
        # data exposed, data loss in progress
        "Our client contracts were shared through a public link and got posted online",
        "files are disappearing from the Projects folder as we speak, dozens a minute",
        "ransomware on one laptop and the encrypted files are syncing to everyone",
        # legal threat
        "Unless the archive is restored by Friday our attorney will file a lawsuit",
    ],
)
def test_critical(message: str) -> None:
    assert urgency_of(message) is Urgency.critical


@pytest.mark.parametrize(
    "message",
    [
        "none of our twelve designers can sign in since this morning",
        "the card bounced and now our whole workspace is read-only",
        "we have a board deadline in two hours and uploads keep failing",
        "This is unacceptable. Fix the billing mess or we cancel everything",
        "I'm locked out of my account and need the files for a client meeting",
    ],
)
def test_high(message: str) -> None:
    assert urgency_of(message) is Urgency.high


@pytest.mark.parametrize(
    "message",
    [
        "I was billed twice for April, please refund one of them",  # billing dispute
        "can you change the owner of our workspace to Priya?",  # account-specific
        "we need a quote for 300 seats with custom contract terms",  # sales / contract
        "does Hivebox have a dark mode?",  # a question the KB cannot answer
    ],
)
def test_medium(message: str) -> None:
    assert urgency_of(message) is Urgency.medium


@pytest.mark.parametrize(
    "message", ["get me a human", "can I chat with a real person please", "/human"]
)
def test_a_plain_wish_for_a_person_is_low(message: str) -> None:
    assert urgency_of(message, confidence=SURE) is Urgency.low


def test_a_request_for_a_person_carries_its_topic() -> None:
    assert urgency_of("I want to talk to a person about a refund", SURE) is Urgency.medium
    assert urgency_of("get me a human, someone hacked our account", SURE) is Urgency.critical


def test_a_complex_change_is_at_least_medium() -> None:
    decision = decide(
        "Please migrate our US workspace to the EU region, merge it with the workspace of our "
        "subsidiary, and keep all shared folder permissions intact while you do it.",
        confidence=UNSURE,
    )
    assert decision is not None
    assert decision.reason is Reason.complex_query
    assert decision.urgency is Urgency.medium


# --- urgency follows the topic for error_pattern and bot_command ------------------------------


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("how do I change the colour of a folder?", Urgency.low),
        ("why did my invoice go up this month?", Urgency.medium),
        ("nobody in the office can open any files since the update", Urgency.high),
    ],
)
def test_an_error_pattern_follows_the_topic(topic: str, expected: Urgency) -> None:
    result = converse([(topic, SURE), ("that's not what I asked", SURE), ("useless.", SURE)])
    assert result is not None
    assert result[1].reason is Reason.error_pattern
    assert result[1].urgency is expected


def test_a_command_follows_the_topic() -> None:
    past = history(("our workspace got suspended and nobody can log in", SURE))
    decision = decide("/agent", past=past)
    assert decision is not None
    assert decision.reason is Reason.bot_command
    assert decision.urgency is Urgency.high
    plain = decide("/handoff")
    assert plain is not None
    assert plain.urgency is Urgency.low


def test_a_command_with_a_sales_topic_is_medium() -> None:
    decision = decide("/agent need a discount for 60 seats")
    assert decision is not None
    assert decision.urgency is Urgency.medium


def test_a_long_conversation_is_low_unless_its_words_say_otherwise() -> None:
    plain = decide("and what about guests?", stored=20)
    assert plain is not None
    assert plain.reason is Reason.conversation_too_long
    assert plain.urgency is Urgency.low
    pressing = decide("and can we add guests before the deadline today?", stored=20)
    assert pressing is not None
    assert pressing.urgency is Urgency.high
