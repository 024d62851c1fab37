"""Reading a generated answer: refusals, token log-probabilities, retrieval evidence."""

from __future__ import annotations

import uuid

import pytest

from nectar.chat.responders.base import HistoryItem
from nectar.chat.responders.confidence import (
    combine,
    refusal_kind,
    retrieval_evidence,
    token_confidence,
)
from nectar.knowledge.search import Hit

SYNC = Hit(
    1, uuid.uuid4(), uuid.uuid4(), "Syncing", "Sync stopped", "Updates sync every minute.", 1
)


@pytest.mark.parametrize(
    "text",
    [
        "I don't know.",
        "I\u2019m not sure which plan includes that.",
        "Sorry, I couldn't find that in the passages.",
        "The passages don't mention bank transfers.",
        "The provided documentation does not cover refunds.",
        "That isn't covered in the knowledge base.",
        "There is no information about Linux support.",
    ],
)
def test_refusals(text: str) -> None:
    assert refusal_kind(text) == "refusal"


@pytest.mark.parametrize(
    "text",
    [
        "If you don't know your password, choose Forgot password on the sign-in page.",
        "Exported documents don't include comments.",
        "We store no information about your card; the payment provider does.",
        "Can't find the button? It is under Settings > Sync.",
        "You are not sure which plan you are on? Open Settings > Billing.",
    ],
)
def test_answers_that_are_not_refusals(text: str) -> None:
    assert refusal_kind(text) == "none"


def test_a_missing_detail_after_the_answer_is_a_hedge() -> None:
    text = "Open Settings > Sync. The passages don't say how often it retries."
    assert refusal_kind(text) == "hedge"


def test_token_confidence_is_the_geometric_mean_probability() -> None:
    assert token_confidence([0.0, 0.0]) == 1.0
    assert token_confidence([-0.5, -1.5]) == pytest.approx(0.3679, abs=1e-4)
    # A server's -9999 for one token does not erase a long confident answer.
    assert token_confidence([-0.01] * 50 + [-9999.0]) > 0.8


def test_retrieval_evidence_matches_inflections_and_follows_up() -> None:
    assert retrieval_evidence("why did syncing stop updating?", [], [SYNC]) == 1.0
    assert retrieval_evidence("how do I pay by invoice?", [], [SYNC]) == 0.0
    assert retrieval_evidence("anything", [], []) == 0.0
    # "and then?" has no content words: the previous user message says what it is about.
    history = [HistoryItem("user", "sync stopped"), HistoryItem("bot", "Check the updates.")]
    assert retrieval_evidence("and then?", history, [SYNC]) == 1.0


def test_combine_stays_in_range_and_orders_the_cases() -> None:
    sure = combine(0.99, 1.0, True, "none", truncated=False)
    unsure = combine(0.3, 1.0, True, "none", truncated=False)
    off_topic = combine(0.99, 0.0, True, "none", truncated=False)
    no_passages = combine(0.99, 0.0, False, "none", truncated=False)
    refusal = combine(0.99, 1.0, True, "refusal", truncated=False)
    assert 1.0 >= sure > off_topic > unsure > no_passages > refusal >= 0.0
    assert combine(None, 1.0, True, "none", truncated=False) >= 0.8
