"""The handoff detector, trigger by trigger: when each fires, when it must not, and how a
bot's configuration changes it. Every sentence here was written for these tests."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from nectar.chat.responders.base import HistoryItem
from nectar.handoffs.detection.base import Reason, TriggerSettings, Urgency
from tests.handoffs.turns import DEFAULTS, SURE, UNSURE, converse, decide, history


def reason_of(message: str, settings: TriggerSettings = DEFAULTS, **kwargs: Any) -> Reason | None:
    decision = decide(message, settings, **kwargs)
    return decision.reason if decision else None


# --- bot_command ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message", ["/human", "/agent", "/handoff", "/HUMAN", "  /agent  ", "/handoff please, now"]
)
def test_a_command_hands_off_whatever_the_answer(message: str) -> None:
    decision = decide(message, confidence=0.99)
    assert decision is not None
    assert decision.reason is Reason.bot_command


def test_the_command_and_its_text_are_the_evidence() -> None:
    decision = decide("/agent our renewal quote looks wrong")
    assert decision is not None
    assert decision.evidence["command"] == "/agent"
    assert decision.evidence["text"] == "our renewal quote looks wrong"


@pytest.mark.parametrize(
    "message",
    [
        "/humans of the office, unite",
        "/help",
        "/agentless backup, is that a thing?",
        "what does typing /agent do here?",
        "human/agent roles: which one can delete folders?",
    ],
)
def test_other_slashes_are_not_commands(message: str) -> None:
    assert reason_of(message) is None


# --- explicit_request -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "can I talk to someone real?",
        "get me a human",
        "I want a representative",
        "transfer me to an agent",
        "is there a person I can chat with?",
        "Let me speak with a human being, please",
        "connect me with customer service",
        "I'd prefer to chat with a live person about this",
        "human!",
        "Agent please",
        "could you escalate this to a real person",
        "I need to talk to somebody from your billing team",
        "I'd like a human to look at my setup",
        "no more bots. I want a person",
        "can i talk to an agnet",
        "talk to a humen pls",
        "Could someone from your support team call me back?",
        "we need somebody to walk us through the SSO setup",
        "I'd rather go over this with an actual engineer, can you set that up?",
        "Is there anyone on your team I could speak to?",
        "Can you get a real person on the line?",
        "is there a human available right now?",
        "Please have someone contact me",
        "Put me in touch with someone",
        "who can I talk to about enterprise pricing?",
        "Representative.",
        "live chat please",
        "escalate to a human",
    ],
)
def test_asking_for_a_person_in_any_words(message: str) -> None:
    decision = decide(message, confidence=SURE)
    assert decision is not None
    assert decision.reason is Reason.explicit_request
    assert decision.evidence["matched"]


@pytest.mark.parametrize(
    "message",
    [
        # negated
        "I don't need a human, just tell me the price",
        "We don't want to talk to a person, we only need the storage limit for Team",
        "I'm not asking for an agent, what's the max upload size?",
        # hypothetical
        "Suppose I wanted a human agent someday, would that cost extra?",
        "If we ever need to talk to a person, is phone support included? just wondering",
        # about the people, not a request for one
        "What time zone are your support agents in?",
        "are you a real person or a bot?",
        "When can I reach a live agent, are you open on holidays?",
        # the trigger words in ordinary questions
        "How do I invite a person from another company to one folder?",
        "Can the sync agent run on a Raspberry Pi?",
        "Is the human resources template pack free?",
        "What's the best way to escalate a ticket to our IT admins?",
        "I'm an agent for a real estate firm, which plan fits 8 people?",
        "help! how do I restore a file from the trash?",
        "do you support SCIM with Google Workspace?",
        "our support person left, how do I move her files to me?",
        "how do I chat with people on my team inside Hivebox?",
        "can someone help me turn on two-factor?",
        "I'd rather not talk to a person, can you just tell me the limit",
        "Would I be able to talk to a person if the bot can't help?",
        "What happens when I ask for a human?",
        "Is this a real person?",
        "How do I assign the agent role?",
        "Can I transfer ownership of a folder to someone else?",
        "Is support available on the free plan?",
        "how do I contact support?",
        "Are agents available on Sundays?",
    ],
)
def test_words_about_people_are_not_requests(message: str) -> None:
    assert reason_of(message, confidence=SURE) is None


# --- keyword_detected -------------------------------------------------------------------------

REFUNDS = dataclasses.replace(DEFAULTS, keywords=("refund", "cancel my account", "escalate"))


@pytest.mark.parametrize(
    "message", ["I want a refund now", "please cancel my account today", "escalate!"]
)
def test_a_configured_keyword_hands_off(message: str) -> None:
    decision = decide(message, REFUNDS)
    assert decision is not None
    assert decision.reason is Reason.keyword_detected
    assert decision.evidence["keyword"] in REFUNDS.keywords


@pytest.mark.parametrize(
    "message",
    [
        "is the annual plan refundable?",  # a substring, not the word
        "I do not want a refund, just an invoice copy",  # negated
        "how do I escalate a ticket in the admin console?",  # a how-to the KB answers
        "how does a refund work on the yearly plan?",
        "If I cancel my account later, do I keep my files?",  # hypothetical
    ],
)
def test_a_keyword_must_be_meant(message: str) -> None:
    assert reason_of(message, settings=REFUNDS) is None


def test_a_how_to_with_a_keyword_hands_off_when_the_kb_cannot_answer() -> None:
    settings = dataclasses.replace(REFUNDS, disabled=frozenset({"low_confidence"}))
    decision = decide("how do I escalate a billing dispute?", settings, confidence=UNSURE)
    assert decision is not None
    assert decision.reason is Reason.keyword_detected


def test_the_default_keywords_match_as_phrases() -> None:
    settings = dataclasses.replace(DEFAULTS, disabled=frozenset({"explicit_request"}))
    decision = decide("okay I need to speak to a  person", settings)
    assert decision is not None
    assert decision.reason is Reason.keyword_detected
    assert decision.evidence["keyword"] == "speak to a person"


def test_no_keywords_no_keyword_trigger() -> None:
    settings = dataclasses.replace(DEFAULTS, keywords=(), disabled=frozenset({"explicit_request"}))
    assert reason_of("talk to a human", settings=settings) is None


# --- error_pattern ----------------------------------------------------------------------------


def test_the_first_failure_is_tolerated_and_the_second_hands_off() -> None:
    result = converse(
        [
            ("How can I recover a file I deleted last week?", SURE),
            ("how do I get back a deleted file from last week", UNSURE),  # asked again
            ("this still doesn't answer my question", SURE),
        ]
    )
    assert result is not None
    number, decision = result
    assert number == 3
    assert decision.reason is Reason.error_pattern
    assert decision.evidence["first"]["kind"] == "repeated_question"
    assert decision.evidence["second"]["kind"] == "complaint"


def test_a_neutral_turn_may_sit_between_the_two_failures() -> None:
    result = converse(
        [
            ("how do I share a folder with a client?", SURE),
            ("no, I meant a client outside the company, that's not what I asked", SURE),
            ("ok and can they upload too?", SURE),
            ("you keep sending the same article. useless", SURE),
        ]
    )
    assert result is not None
    assert result[0] == 4
    assert result[1].reason is Reason.error_pattern


def test_failures_far_apart_are_not_a_pattern() -> None:
    assert (
        converse(
            [
                ("how do I share a folder with a client?", SURE),
                ("that's not what I asked, I mean someone outside the company", SURE),
                ("ok and can they upload too?", SURE),
                ("what about on the free plan?", SURE),
                ("that didn't help", SURE),
            ]
        )
        is None
    )


@pytest.mark.parametrize(
    "complaint",
    [
        "No, wrong.",
        "This isn't helping",
        "Stop giving me the same link",
        "Why do you keep telling me to reinstall?",
        "Are you even listening?",
        "that doesn't answer my question",
        "This is going nowhere",
        "You already told me that",
    ],
)
def test_complaints_in_other_words(complaint: str) -> None:
    past = history(("how do I pin a folder to the sidebar?", SURE), ("not what I asked", SURE))
    decision = decide(complaint, past=past)
    assert decision is not None
    assert decision.reason is Reason.error_pattern


@pytest.mark.parametrize(
    "follow_up",
    [
        "is it the same price for guests?",
        "wrong password error when I log in - what do I do?",
        "how do I stop getting the same notification twice?",
        "is the link still valid after a week?",
        "I already have Team, can I add guests?",
    ],
)
def test_ordinary_follow_ups_are_not_complaints(follow_up: str) -> None:
    past = history(("how do I pin a folder to the sidebar?", SURE), ("not what I asked", SURE))
    assert reason_of(follow_up, past=past) is None


def test_asking_the_same_thing_three_times() -> None:
    result = converse(
        [
            ("how do I change my email address", SURE),
            ("how can I update the email on my account", SURE),
            ("how do I change the login email", SURE),
        ]
    )
    assert result is not None
    assert result[0] == 3
    assert result[1].reason is Reason.error_pattern


def test_a_problem_described_in_the_first_message_is_not_a_failure() -> None:
    assert converse([("my desktop app doesn't work, it's stuck on syncing", SURE)]) is None


def test_repeated_low_confidence_answers_are_a_pattern() -> None:
    settings = dataclasses.replace(DEFAULTS, disabled=frozenset({"low_confidence"}))
    result = converse(
        [("what's the weather like in Lisbon", UNSURE), ("recommend a good pizza place", UNSURE)],
        settings,
    )
    assert result is not None
    assert result[0] == 2
    assert result[1].reason is Reason.error_pattern


def test_repeated_provider_errors_are_a_pattern() -> None:
    settings = dataclasses.replace(DEFAULTS, disabled=frozenset({"low_confidence"}))
    past = history(("how do I rename a shared folder?", 0.0))
    decision = decide("hello?", settings, past=past, confidence=0.0, error="timeout")
    assert decision is not None
    assert decision.reason is Reason.error_pattern
    assert decision.evidence["second"]["kind"] == "provider_error"


def test_a_human_reply_closes_the_earlier_episode() -> None:
    past = history(("how do I add a guest?", SURE), ("not what I asked", SURE))
    past.append(HistoryItem("agent", "Hi, I've sorted the guest invite for you."))
    past += history(("thanks. and how do I remove one?", SURE))
    assert reason_of("that didn't help", past=past) is None


# --- complex_query ----------------------------------------------------------------------------


def test_a_multi_step_change_across_systems_hands_off() -> None:
    decision = decide(
        "We're consolidating three offices: please merge the Berlin and Paris workspaces into "
        "ours, move everything to the EU region, switch billing to one annual invoice and "
        "connect SSO with our Okta for all 90 employees. Where do we start?",
        confidence=UNSURE,
    )
    assert decision is not None
    assert decision.reason is Reason.complex_query
    assert decision.urgency is Urgency.medium
    assert {"merge", "relocate", "switch_over"} <= set(decision.evidence["changes"])


@pytest.mark.parametrize(
    "message",
    [
        "How do I move a file into a shared folder and keep the same link?",
        "upgrade, migrate and merge?",
        "Can you explain how version history works on the Business plan, how long old files "
        "are kept, and whether restoring an old version changes the share link for guests?",
    ],
)
def test_ordinary_questions_are_not_complex(message: str) -> None:
    assert reason_of(message, confidence=SURE) is None


# --- low_confidence ---------------------------------------------------------------------------


def test_a_doubtful_answer_hands_off() -> None:
    decision = decide("can you waive the late fee on invoice 4471?", confidence=0.31)
    assert decision is not None
    assert decision.reason is Reason.low_confidence
    assert decision.urgency is Urgency.medium
    assert decision.evidence["score"] == 0.31
    assert decision.evidence["threshold"] == 0.6


def test_the_threshold_itself_is_confident_enough() -> None:
    assert reason_of("what does the Team plan cost?", confidence=0.6) is None


def test_a_bot_sets_its_own_threshold() -> None:
    lenient = dataclasses.replace(DEFAULTS, confidence_threshold=0.3)
    assert reason_of("what does the Team plan cost?", settings=lenient, confidence=0.4) is None
    assert (
        reason_of("what does the Team plan cost?", settings=lenient, confidence=0.2)
        is Reason.low_confidence
    )


@pytest.mark.parametrize(
    "message",
    [
        "thanks for the help!",
        "no need for an agent, I figured it out. thanks",
        "ok great, that worked",
        "Cheers!",
        "hi there",
        "perfect, got it, thank you so much",
    ],
)
def test_pleasantries_need_no_confidence(message: str) -> None:
    assert reason_of(message, confidence=0.05) is None


def test_one_provider_error_is_tolerated_the_second_hands_off() -> None:
    # The fallback reply asks the user to try again: a short outage must not flood the queue.
    assert reason_of("how do I add a guest?", confidence=0.0, error="connection refused") is None
    past = history(("how do I add a guest?", 0.0))
    decision = decide("how do I add a guest?", past=past, confidence=0.0, error="timeout")
    assert decision is not None
    assert decision.reason is Reason.error_pattern
    assert decision.evidence["second"] == {"kind": "provider_error", "error": "timeout"}


def test_no_answer_no_confidence_trigger() -> None:
    assert reason_of("any update on this?", confidence=None) is None


def test_a_critical_situation_hands_off_however_sure_the_bot_is() -> None:
    decision = decide(
        "Someone got into our admin account last night and is deleting shared folders right now",
        confidence=0.95,
    )
    assert decision is not None
    assert decision.reason is Reason.low_confidence
    assert decision.urgency is Urgency.critical
    assert decision.evidence["rule"] == "critical_situation"


def test_a_question_about_security_is_just_a_question() -> None:
    assert reason_of("What should I do if my account is ever hacked?", confidence=SURE) is None


# --- conversation_too_long --------------------------------------------------------------------


def test_the_eleventh_user_message_passes_the_default_limit() -> None:
    questions = [
        "which plans are there?",
        "how much storage does Team get?",
        "and version history on Team?",
        "can guests upload?",
        "how do I turn on two-factor?",
        "does the Linux app support selective sync?",
        "where do I find invoices?",
        "can I pay by bank transfer?",
        "how do I export everything?",
        "is there a Slack integration?",
        "what about Zoom recordings?",
        "last one: how do I change my email?",
    ]
    result = converse([(q, SURE) for q in questions])
    assert result is not None
    number, decision = result
    assert number == 11
    assert decision.reason is Reason.conversation_too_long
    assert decision.urgency is Urgency.low
    assert decision.evidence["messages"] == 21


@pytest.mark.parametrize(("stored", "fires"), [(4, False), (5, False), (6, True)])
def test_a_bot_sets_its_own_length_limit(stored: int, fires: bool) -> None:
    short = dataclasses.replace(DEFAULTS, max_conversation_length=6)
    reason = reason_of("and the Business plan?", settings=short, stored=stored)
    assert (reason is Reason.conversation_too_long) is fires


# --- time_based -------------------------------------------------------------------------------


def test_time_limit_off_by_default() -> None:
    assert reason_of("and on the Free plan?", minutes=600) is None


@pytest.mark.parametrize(("minutes", "fires"), [(29.5, False), (30, False), (31, True)])
def test_a_conversation_running_too_long(minutes: float, fires: bool) -> None:
    timed = dataclasses.replace(DEFAULTS, max_conversation_minutes=30)
    reason = reason_of("and on the Free plan?", settings=timed, minutes=minutes)
    assert (reason is Reason.time_based) is fires


# --- one decision, in order; configuration ----------------------------------------------------


def test_a_command_beats_a_request_and_a_request_beats_doubt() -> None:
    assert reason_of("/human get me a person", confidence=UNSURE) is Reason.bot_command
    assert reason_of("get me a human", confidence=UNSURE) is Reason.explicit_request


def test_the_limit_comes_after_what_the_user_said() -> None:
    assert reason_of("get me a human", stored=30) is Reason.explicit_request
    assert reason_of("and for guests?", stored=30) is Reason.conversation_too_long
    # A limit is the owner's policy: it names the handoff even when the answer was doubtful.
    assert reason_of("and for guests?", stored=30, confidence=UNSURE) is (
        Reason.conversation_too_long
    )


def test_a_disabled_reason_never_fires() -> None:
    settings = dataclasses.replace(DEFAULTS, disabled=frozenset({"explicit_request"}))
    assert reason_of("get me a human", settings=settings) is None
    assert reason_of("get me a human", settings=settings, confidence=UNSURE) is (
        Reason.low_confidence
    )


def test_handoff_switched_off_for_a_bot() -> None:
    off = dataclasses.replace(DEFAULTS, enabled=False)
    assert reason_of("/human", settings=off) is None
    assert reason_of("get me a human", settings=off, confidence=0.0) is None


def test_evidence_names_the_trigger_and_the_urgency_rules() -> None:
    decision = decide("I need to talk to a person about a double charge")
    assert decision is not None
    assert decision.evidence["trigger"] == "explicit_request"
    assert decision.evidence["rule"] == "talk_to"
    assert decision.evidence["urgency_rules"] == ["billing"]
