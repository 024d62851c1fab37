"""The offline responder: short grounded answers, follow-ups, and a confidence that means it.

The unit tests use a small help centre written for them (Quillpad, a note-taking app) and a
stand-in for full-text search; the last test loads the evaluation knowledge base through the
HTTP API and asks it questions of our own, on both databases.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from nectar.chat.responders.base import Answer, HistoryItem, Question
from nectar.chat.responders.builtin import FALLBACK, BuiltinResponder
from nectar.chat.responders.lexicon import stem, tokens
from nectar.knowledge.chunking import chunk_markdown
from nectar.knowledge.search import Hit, query_terms
from tests.helpers import create_bot
from tests.knowledge.test_search_ranking import load_kb

ARTICLES = {
    "Quillpad plans and prices": """
Quillpad has three plans. Prices are in US dollars.

**Free** ($0): up to 3 notebooks, 100 MB of uploads per month and sync on 2 devices.

**Plus** ($6 per month, or $60 per year): unlimited notebooks, 5 GB of uploads per month,
offline notebooks and public links with expiry dates.

**Studio** ($14 per user per month): everything in Plus, shared team spaces, admin controls
and single sign-on. Minimum 3 users.

Students get 50% off Plus with a school email address. Change plans in
**Preferences > Billing > Plan**.
""",
    "Exporting your notes": """
You can download everything you wrote at any time.

1. Open **Preferences > Data > Export everything**.
2. Choose Markdown or PDF and click **Start**.

We email you a download link when the export is ready. The link works for **3 days**. Exports
larger than 5 GB are split into several ZIP files.

Attachments are included; comments and version history are not. To export a single notebook,
right-click it and choose **Export notebook**.
""",
    "Sharing a notebook": """
To share a notebook, click **Share > Invite** and enter an email address. Pick a role:

- **Reader:** can read and comment
- **Writer:** can add, edit and delete notes

**Public links:** anyone with the link can read the notebook. On Plus and Studio you can set
an expiry date up to 90 days ahead in **Share > Public link > Expiry**. On Free, public links
never expire; turn them off in the same place.

To stop sharing, open **Share**, click the person's role and choose **Remove**.
""",
    "Two-step sign-in": """
Two-step sign-in asks for a code from your phone as well as your password.

1. Go to **Preferences > Security > Two-step sign-in** and click **Turn on**.
2. Scan the QR code with an authenticator app.
3. Type the 6-digit code to confirm.
4. Save your 8 recovery codes somewhere safe.

Studio admins can require two-step sign-in for everyone in **Admin > Security > Policies**.
""",
    "Closing your account": """
To close your account, go to **Preferences > Account > Close account** and type your password.

Your notes are kept for a **30-day cooling-off period**. To reopen the account, sign in again
within those 30 days. After that, everything is deleted for good.

If you pay for Plus, cancel the subscription first in **Preferences > Billing > Plan**.
""",
    "When sync gets stuck": """
If notes stop syncing between your devices, try these steps in order:

1. **Check your connection.** Quillpad needs an internet connection to sync.
2. **Restart Quillpad.** Quit the app completely and open it again.
3. **Sign out and back in** from **Preferences > Account**.
4. **Clear the local cache** in **Preferences > Advanced > Clear cache**. Your notes stay in
   the cloud.
5. **Send a diagnostics report** from **Help > Send diagnostics** and tell us what happened.
""",
    "Contacting the Quillpad team": """
Our support team answers by email at help@quillpad.example, Monday to Friday, 09:00 to 18:00
CET. Studio customers also get chat support on weekends. We reply within 2 business days.
""",
}

JAR = uuid.uuid4()
DOCUMENTS = {title: uuid.uuid4() for title in ARTICLES}


def _chunks() -> list[Hit]:
    hits = []
    for title, body in ARTICLES.items():
        for chunk in chunk_markdown(title, body):
            hits.append(
                Hit(len(hits) + 1, DOCUMENTS[title], JAR, title, chunk.heading, chunk.body, 0.0)
            )
    return hits


CHUNKS = _chunks()


def search(text: str, limit: int = 12) -> list[Hit]:
    """Like the database's search: any of the question's words, most and rarest first."""
    terms = {stem(t) for t in query_terms(text)}
    found = []
    for hit in CHUNKS:
        words = {stem(t) for t in tokens(f"{hit.heading} {hit.body}")}
        score = sum(1.0 / sum(1 for c in CHUNKS if t in _words(c)) for t in terms & words)
        if score:
            found.append((score, hit))
    found.sort(key=lambda pair: -pair[0])
    return [
        Hit(h.chunk_id, h.document_id, h.jar_id, h.title, h.heading, h.body, score)
        for score, h in found[:limit]
    ]


def _words(hit: Hit) -> set[str]:
    return {stem(t) for t in tokens(f"{hit.heading} {hit.body}")}


class Chat:
    """A conversation with the responder, retrieval done as the chat service does it."""

    def __init__(self) -> None:
        self.responder = BuiltinResponder()
        self.history: list[HistoryItem] = []

    async def ask(self, message: str) -> Answer:
        previous = next((h.content for h in reversed(self.history) if h.role == "user"), "")
        question = Question(
            bot_name="Quill",
            system_prompt="",
            message=message,
            history=list(self.history),
            passages=search(f"{message} {previous}"),
        )
        answer = await self.responder.answer(question)
        self.history += [
            HistoryItem("user", message),
            HistoryItem("bot", answer.text, answer.confidence),
        ]
        return answer


async def ask(message: str) -> Answer:
    return await Chat().ask(message)


def words(text: str) -> int:
    return len(text.split())


# --- the reply --------------------------------------------------------------------------------


async def test_the_reply_is_the_passage_with_the_fact_not_the_article() -> None:
    answer = await ask("How much does the Plus plan cost?")
    assert "$6 per month" in answer.text
    assert words(answer.text) <= 60
    # Not the whole article: the Free plan and the student discount stay out.
    assert "$0" not in answer.text
    assert "Students" not in answer.text
    assert answer.sources[0].title == "Quillpad plans and prices"


async def test_menu_paths_are_copied_verbatim_without_markdown() -> None:
    answer = await ask("how do I turn on two-step sign-in?")
    assert "Preferences > Security > Two-step sign-in" in answer.text
    assert "**" not in answer.text
    # The steps, not the admin policy at the end of the article.
    assert "Admin > Security > Policies" not in answer.text


async def test_a_list_line_comes_with_its_lead_in() -> None:
    answer = await ask("what can a writer do in a shared notebook?")
    assert "Writer: can add, edit and delete notes" in answer.text
    assert "Pick a role" in answer.text


async def test_a_number_question_gets_the_line_with_the_number() -> None:
    answer = await ask("how many recovery codes do I get?")
    assert "8 recovery codes" in answer.text


# --- follow-ups -------------------------------------------------------------------------------


async def test_a_follow_up_stays_with_the_article_of_the_previous_answer() -> None:
    chat = Chat()
    first = await chat.ask("how do I export my notes?")
    assert "Preferences > Data > Export everything" in first.text
    # Sharing also has links that expire (after 90 days); the export's link is meant.
    answer = await chat.ask("how long does the link work?")
    assert "3 days" in answer.text
    assert "90 days" not in answer.text
    assert answer.confidence > 0.6


async def test_a_follow_up_pointing_back_keeps_the_topic() -> None:
    chat = Chat()
    await chat.ask("can a public link expire on its own?")
    # "Free" is all over the plans article; "that" is the public link.
    answer = await chat.ask("can I do that on the free plan?")
    assert "On Free, public links never expire" in answer.text
    assert answer.sources[0].title == "Sharing a notebook"


async def test_can_i_undo_it_uses_the_conversation() -> None:
    chat = Chat()
    await chat.ask("I want to close my account, how?")
    answer = await chat.ask("can I undo it if I change my mind?")
    assert "30 days" in answer.text
    assert answer.sources[0].title == "Closing your account"


async def test_the_topic_survives_a_thank_you() -> None:
    chat = Chat()
    await chat.ask("how do I export my notes?")
    await chat.ask("thanks!")
    answer = await chat.ask("and what about comments, are they in it?")
    assert "comments and version history are not" in answer.text


async def test_already_tried_moves_on_to_the_next_steps() -> None:
    chat = Chat()
    first = await chat.ask("my notes won't sync between my laptop and phone")
    assert first.sources[0].title == "When sync gets stuck"
    answer = await chat.ask("I already tried restarting Quillpad, that didn't help")
    assert "Restart Quillpad" not in answer.text
    assert "Clear the local cache" in answer.text or "Sign out and back in" in answer.text


async def test_a_correction_does_not_repeat_the_same_answer() -> None:
    chat = Chat()
    first = await chat.ask("how do I share a notebook?")
    second = await chat.ask("that's not what I asked, I mean a public link")
    assert second.text != first.text
    assert "Public links" in second.text


# --- confidence -------------------------------------------------------------------------------

ANSWERABLE = [
    "how much is Plus per year?",
    "how do I export everything as PDF?",
    "how do I stop sharing a notebook with someone?",
    "what are your support hours?",
    "do students get a discount?",
    "how do I clear the cache?",
    "can studio admins force two-step sign-in for the whole team?",
]

UNANSWERABLE = [
    # actions on one account, about one event
    "please refund the $6 you charged me twice on April 12th",
    "why was my card declined yesterday?",
    "could you restore the notebook my colleague deleted last Tuesday?",
    # contracts, compliance and topics the help centre never mentions
    "we need a signed data processing agreement and a 99.9% uptime guarantee",
    "is Quillpad certified for FedRAMP and ISO 27001?",
    "what's the best way to cook risotto?",
    "who won the chess championship in 1972?",
]


@pytest.mark.parametrize("message", ANSWERABLE)
async def test_questions_the_articles_answer_are_confident(message: str) -> None:
    answer = await ask(message)
    assert answer.confidence > 0.6, (message, answer)


async def test_a_clear_match_is_highly_confident() -> None:
    answer = await ask("how do I close my account?")
    assert answer.confidence > 0.75
    assert "Preferences > Account > Close account" in answer.text


@pytest.mark.parametrize("message", UNANSWERABLE)
async def test_questions_the_articles_cannot_answer_are_not(message: str) -> None:
    answer = await ask(message)
    assert answer.confidence < 0.6, (message, answer)


@pytest.mark.parametrize(
    "message", ["what's the best way to cook risotto?", "who won the chess championship in 1972?"]
)
async def test_unrelated_questions_are_far_below_the_line(message: str) -> None:
    answer = await ask(message)
    assert answer.confidence < 0.3, (message, answer)


async def test_a_partial_match_lands_in_between() -> None:
    """One article covers the question's words, but not the unknown integrations it asks
    about: unsure rather than sure or lost."""
    answer = await ask("can Quillpad notebooks sync with Trello and Asana boards?")
    assert 0.05 < answer.confidence < 0.6


# Who asks and why frames a question; it is not what is asked. A story that describes the
# asker may use words no article has, and the question is still answered; a story that tells
# what happened to one account is what the question is about.
FRAMED_ANSWERABLE = [
    "My editor works for another publisher. Can I let her read one of my notebooks?",
    "I teach at a small music school. Do students get a discount on Plus?",
    "Quick question from our design team: how long does the export download link work?",
    "Our bookkeeper is a contractor, not staff. Can she be a reader on just one notebook?",
    "I'm a novelist and my chapters live in Quillpad. How do I turn on two-step sign-in?",
]

FRAMED_UNANSWERABLE = [
    "Our intern deleted the company notebook last week and closed his account. Can you bring "
    "the notebook back?",
    "My laptop was stolen at the airport. Can you wipe Quillpad from it remotely?",
    "The school cancelled our licence after an audit. Why were we charged again?",
]


@pytest.mark.parametrize("message", FRAMED_ANSWERABLE)
async def test_a_framed_question_is_confident_when_the_question_is_answered(
    message: str,
) -> None:
    answer = await ask(message)
    assert answer.confidence > 0.6, (message, answer)


@pytest.mark.parametrize("message", FRAMED_UNANSWERABLE)
async def test_a_story_of_what_happened_to_one_account_stays_unsure(message: str) -> None:
    answer = await ask(message)
    assert answer.confidence < 0.6, (message, answer)


@pytest.mark.parametrize(
    "message",
    [
        "",
        "?",
        "the",
        "ok",
        "asdkjh qwpoe zxmnb",
        "Plus " * 300,
        "¿Cómo exporto mis notas? 日本語",
        "1234567890",
        "how do I export? " + "why? " * 40,
    ],
)
async def test_confidence_is_always_a_probability(message: str) -> None:
    for passages in (search(message), CHUNKS, []):
        answer = await BuiltinResponder().answer(Question("Quill", "", message, [], passages))
        assert 0.0 <= answer.confidence <= 1.0
        assert answer.text


async def test_no_passages_is_the_fallback_with_confidence_zero() -> None:
    question = Question("Quill", "", "how do I export my notes?", [], [])
    answer = await BuiltinResponder().answer(question)
    assert answer.text == FALLBACK
    assert answer.confidence == 0.0
    assert answer.sources == []


async def test_a_passage_without_text_is_the_fallback() -> None:
    empty = Hit(1, uuid.uuid4(), JAR, "Exporting your notes", "Exporting your notes", "", 1.0)
    question = Question("Quill", "", "how do I export my notes?", [], [empty])
    answer = await BuiltinResponder().answer(question)
    assert (answer.text, answer.confidence) == (FALLBACK, 0.0)


async def test_thanks_gets_a_short_polite_reply() -> None:
    chat = Chat()
    await chat.ask("how do I export my notes?")
    answer = await chat.ask("thanks for the help!")
    assert words(answer.text) <= 15
    assert "Export" not in answer.text
    # Not a question: moderate, above the default handoff threshold of 0.6.
    assert 0.6 < answer.confidence <= 0.75


@pytest.mark.parametrize("message", ["hi there", "ok", "great, got it"])
async def test_greetings_and_acknowledgements_are_not_looked_up(message: str) -> None:
    answer = await ask(message)
    assert answer.sources == []
    assert words(answer.text) <= 10
    assert answer.confidence == 0.7


async def test_wrapped_source_lines_come_back_as_whole_sentences() -> None:
    answer = await ask("do students get a discount?")
    assert "Students get 50% off Plus with a school email address." in answer.text
    assert "Change plans in Preferences > Billing > Plan." in answer.text


async def test_a_negated_aside_does_not_steer_the_answer() -> None:
    answer = await ask("I don't need support hours, just tell me the price of Studio")
    assert "$14 per user per month" in answer.text


# --- the evaluation knowledge base through the API, on both databases -------------------------


async def test_own_questions_on_the_eval_knowledge_base(
    client: httpx.AsyncClient, admin: Any
) -> None:
    jar_id, _ = await load_kb(client, admin.headers)
    # Handoffs off: this test is about the answers, whatever the detector would decide.
    bot = await create_bot(client, admin, honey_jar_ids=[jar_id], handoff_enabled=False)
    headers = {"Authorization": f"Bearer {bot['api_key']}"}

    async def chat(message: str, conversation_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"message": message}
        if conversation_id:
            body["conversation_id"] = conversation_id
        r = await client.post(f"/api/nectar-bots/{bot['id']}/chat", json=body, headers=headers)
        assert r.status_code == 200, r.text
        reply: dict[str, Any] = r.json()
        return reply

    cases = [
        ("how long is a password reset link valid for?", "Resetting your password", "60 minutes"),
        ("how many guests can a team workspace have?", "Sharing folders", "50"),
        ("how long do you keep audit log events?", "Audit logs", "2 years"),
        ("which payment methods do you accept?", "Payment methods", "Visa"),
    ]
    for question, title, fact in cases:
        reply = await chat(question)
        assert reply["sources"][0]["title"].startswith(title), (question, reply)
        assert fact in reply["reply"], (question, reply["reply"])
        assert reply["confidence"] > 0.6, (question, reply["confidence"])
        assert len(reply["reply"].split()) <= 70

    first = await chat("how do I export a copy of my own files?")
    assert "Export my data" in first["reply"]
    follow_up = await chat("and how long does the download link last?", first["conversation_id"])
    assert "7 days" in follow_up["reply"]

    unanswerable = await chat("please refund the $45 you charged us on 2 June")
    assert unanswerable["confidence"] < 0.6
    unrelated = await chat("what's a good pasta recipe for tonight?")
    assert unrelated["confidence"] < 0.3


async def test_framing_on_the_eval_knowledge_base(client: httpx.AsyncClient, admin: Any) -> None:
    """Questions of our own wrapped in who asks and why: the words of the framing are in no
    article, and the answer is still the right one, given with confidence. A story of what
    happened to one account is not answered with confidence, however well the question's
    own words match."""
    jar_id, _ = await load_kb(client, admin.headers)
    bot = await create_bot(client, admin, honey_jar_ids=[jar_id], handoff_enabled=False)
    headers = {"Authorization": f"Bearer {bot['api_key']}"}

    async def chat(message: str) -> dict[str, Any]:
        r = await client.post(
            f"/api/nectar-bots/{bot['id']}/chat", json={"message": message}, headers=headers
        )
        assert r.status_code == 200, r.text
        reply: dict[str, Any] = r.json()
        return reply

    framed = [
        (
            "I'm a photographer and my clients need to see proofs. Can I put a password on "
            "a share link?",
            "Share links",
            "8 characters",
        ),
        (
            "I manage a small bakery with three staff. How do I invite members to the workspace?",
            "Using the admin console",
            "Admin Console > Members > Invite",
        ),
        (
            "I'm new here, sorry if this is obvious: where do I find the trash?",
            "Restoring deleted files",
            "left sidebar",
        ),
    ]
    for question, title, fact in framed:
        reply = await chat(question)
        assert reply["sources"][0]["title"].startswith(title), (question, reply)
        assert fact in reply["reply"], (question, reply["reply"])
        assert reply["confidence"] > 0.6, (question, reply["confidence"])

    for question in [
        "Our previous admin was fired and took the only admin password with him. Can you "
        "give me access to the admin console?",
        "My husband passed away last month. How do I get into his Hivebox account?",
    ]:
        reply = await chat(question)
        assert reply["confidence"] < 0.6, (question, reply)
