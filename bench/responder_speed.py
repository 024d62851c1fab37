"""The builtin responder's cost per chat turn on the evaluation set, and a golden check.

    .venv/bin/python bench/responder_speed.py [--set ../shared/eval/dev.jsonl]
        [--record FILE | --check FILE] [--against REV] [--repeat 5] [--profile] [--json]

Builds the questions the server would build, without the server: the 32 articles of
shared/eval/kb are chunked by the knowledge chunker and stored in a fresh SQLite database
(migrated as the tests' databases are), and for every user turn of every conversation of the
set the passages are that database's own full-text search for the message plus the previous
user message (as ``chat.service._retrieval_text``), ``passages`` from config/config.yml, and
the history is the conversation's last ten messages with the responder's own replies in it
(handoffs off: every turn is answered, as bench/eval_detector.py asks the server to do).

``--record`` writes every answer's (text, confidence, sources) to a JSON file; ``--check``
compares with such a file and exits 1 on any difference. The timed passes must also give the
first pass's answers: caches may not change one.

Timing, ``BuiltinResponder.answer`` per call with time.perf_counter, each question handed
over in new string objects as the database would (a string caches its hash):

- cold: one pass with every cache of the responder empty, as after a restart;
- repeat: ``--repeat`` passes over the same questions, every cache warm;
- new messages: as many passes, the caches keyed by message text emptied at the start of
  each conversation, so that a turn meets its passages and words again but its message for
  the first time, as on a server.

Reported: median and p90 of all calls, and of each question's best of its passes (steadier
on a busy machine). ``--against REV`` also times the responder as it is at git revision REV
(its four modules, from ``git show``), interleaved with the current one. ``--profile`` prints
the top of a cProfile of the repeat passes.

Not a test: a measurement, and a guard against an optimisation that changes an answer.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa

from nectar import migrations
from nectar.chat.responders.base import Answer, HistoryItem, Question
from nectar.chat.responders.builtin import BuiltinResponder
from nectar.db import create_engine, utcnow
from nectar.knowledge.chunking import chunk_document
from nectar.knowledge.models import Chunk, Document, HoneyJar
from nectar.knowledge.search import Hit, search
from nectar.settings import load_settings
from nectar.users.models import User

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("NECTAR_BENCH_SHARED", REPO.parent / "shared"))
HISTORY_TURNS = 10  # as chat.service


def _run(coro: Coroutine[Any, Any, Answer]) -> Answer:
    """Drive a coroutine that never awaits anything pending: no event loop in the timing."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: Answer = done.value
        return result
    raise RuntimeError("the responder awaited something")


async def _store_kb(url: str) -> uuid.UUID:
    """The kb articles as `nectar jars import` stores them; ids fixed, so sources compare."""
    engine = create_engine(url)
    owner, jar = (
        uuid.uuid5(uuid.NAMESPACE_URL, "bench-owner"),
        uuid.uuid5(uuid.NAMESPACE_URL, "bench-jar"),
    )
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(User.__table__).values(  # type: ignore[attr-defined]
                id=owner,
                email="bench@example.com",
                name="bench",
                role="admin",
                password_hash="x",
                is_active=True,
                created_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            sa.insert(HoneyJar.__table__).values(  # type: ignore[attr-defined]
                id=jar,
                owner_id=owner,
                name="eval kb",
                description="",
                created_at=now,
                updated_at=now,
            )
        )
        for path in sorted((SHARED / "eval" / "kb").glob("*.md")):
            text = path.read_text()
            title = text.splitlines()[0].lstrip("# ").strip()
            doc = uuid.uuid5(uuid.NAMESPACE_URL, path.name)
            pieces = chunk_document(title, text, "text/markdown")
            await conn.execute(
                sa.insert(Document.__table__).values(  # type: ignore[attr-defined]
                    id=doc,
                    jar_id=jar,
                    title=title,
                    content=text,
                    content_type="text/markdown",
                    size_bytes=len(text.encode()),
                    chunk_count=len(pieces),
                    created_at=now,
                    updated_at=now,
                )
            )
            for piece in pieces:
                await conn.execute(
                    sa.insert(Chunk.__table__).values(  # type: ignore[attr-defined]
                        document_id=doc,
                        jar_id=jar,
                        position=piece.position,
                        heading=piece.heading,
                        body=piece.body,
                    )
                )
    await engine.dispose()
    return jar


async def _questions(
    url: str, jar: uuid.UUID, conversations: list[dict[str, Any]], limit: int
) -> tuple[list[str], list[Question], list[Answer]]:
    """Every turn's Question, with the responder's own earlier replies in the history."""
    engine = create_engine(url)
    responder = BuiltinResponder()
    questions: list[Question] = []
    answers: list[Answer] = []
    keys: list[str] = []
    async with engine.connect() as conn:
        for conv in conversations:
            stored: list[HistoryItem] = []
            for i, message in enumerate(conv["turns"]):
                history = stored[-HISTORY_TURNS:]
                previous = next((h.content for h in reversed(history) if h.role == "user"), "")
                hits = await search(conn, [jar], f"{message} {previous}".strip(), limit)
                question = Question("Hivebox", "", message, history, hits)
                answer = await responder.answer(question)
                questions.append(question)
                answers.append(answer)
                keys.append(f"{conv['id']}#{i + 1}")
                stored += [
                    HistoryItem("user", message),
                    HistoryItem("bot", answer.text, answer.confidence),
                ]
    await engine.dispose()
    return keys, questions, answers


def _as_json(answer: Answer) -> dict[str, Any]:
    return {
        "text": answer.text,
        "confidence": answer.confidence,
        "sources": [
            {
                "document_id": str(s.document_id),
                "title": s.title,
                "heading": s.heading,
                "score": s.score,
            }
            for s in answer.sources
        ],
    }


def _fresh(text: str) -> str:
    """An equal string that is a new object, as every turn's database rows are: a string
    caches its hash, and a cache keyed by passages must pay for hashing them each turn."""
    return (text + " ")[:-1]


def _as_served(q: Question) -> Question:
    """The question as the server would hand it over on another turn: the same text in new
    string objects."""
    hits = [
        Hit(
            h.chunk_id,
            h.document_id,
            h.jar_id,
            _fresh(h.title),
            _fresh(h.heading),
            _fresh(h.body),
            h.score,
        )
        for h in q.passages
    ]
    history = [HistoryItem(h.role, _fresh(h.content), h.confidence) for h in q.history]
    return Question(q.bot_name, q.system_prompt, _fresh(q.message), history, hits)


RESPONDER_MODULES = ("builtin", "lexicon", "passages", "reading")
# Caches keyed by a message's text (or a reply's): on a server the message of a turn is new,
# the conversation's earlier ones were seen on the turns before.
MESSAGE_CACHES = ("normalise", "_topic", "_story", "_small_talk", "_negated_tokens", "reply_lines")


def _modules(package: str) -> list[ModuleType]:
    return [importlib.import_module(f"{package}.{name}") for name in RESPONDER_MODULES]


def _clear(modules: list[ModuleType], names: tuple[str, ...] | None = None) -> None:
    """Empty the functools caches of the modules (only those called ``names``, if given)."""
    for module in modules:
        for name, value in vars(module).items():
            clear = getattr(value, "cache_clear", None)
            if callable(clear) and (names is None or name in names):
                clear()


def _at_revision(rev: str) -> str:
    """The responder's modules as they are at a git revision, as an importable package."""
    root = Path(tempfile.mkdtemp(prefix="nectar-bench-rev-"))
    package = root / "responder_at_rev"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in RESPONDER_MODULES:
        source = subprocess.run(
            ["git", "show", f"{rev}:src/nectar/chat/responders/{name}.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        modules = "|".join(RESPONDER_MODULES)
        source = re.sub(rf"nectar\.chat\.responders\.({modules})\b", r"responder_at_rev.\1", source)
        (package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(root))
    return "responder_at_rev"


class _Timed:
    """One responder implementation and its timings, per question."""

    def __init__(self, label: str, package: str) -> None:
        self.label = label
        self.modules = _modules(package)
        self.responder = self.modules[0].BuiltinResponder()
        self.cold: list[float] = []
        self.samples: dict[str, list[list[float]]] = {}

    def time_pass(self, mode: str, questions: list[Question], starts: set[int]) -> list[Answer]:
        samples = self.samples.setdefault(mode, [[] for _ in questions])
        answers = []
        served = [_as_served(q) for q in questions]
        for i, q in enumerate(served):
            if mode == "new messages" and i in starts:
                _clear(self.modules, MESSAGE_CACHES)
            start = time.perf_counter()
            answers.append(_run(self.responder.answer(q)))
            samples[i].append(time.perf_counter() - start)
        return answers

    def time_cold(self, questions: list[Question]) -> None:
        _clear(self.modules)
        self.first: list[dict[str, Any]] = []
        for q in map(_as_served, questions):
            start = time.perf_counter()
            answer = _run(self.responder.answer(q))
            self.cold.append(time.perf_counter() - start)
            self.first.append(_as_json(answer))

    def report(self) -> dict[str, Any]:
        def us(values: list[float], share: float) -> float:
            return round(_percentile(values, share) * 1e6, 1)

        out: dict[str, Any] = {
            "cold": {"median_us": us(self.cold, 0.5), "p90_us": us(self.cold, 0.9)}
        }
        for mode, per_question in self.samples.items():
            every = [t for ts in per_question for t in ts]
            best = [min(ts) for ts in per_question]
            out[mode] = {
                "median_us": us(every, 0.5),
                "p90_us": us(every, 0.9),
                "best_median_us": us(best, 0.5),
                "best_p90_us": us(best, 0.9),
                "best_mean_us": round(statistics.mean(best) * 1e6, 1),
            }
        return out


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--set", type=Path, default=SHARED / "eval" / "dev.jsonl")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--record", type=Path, help="write every answer to this JSON file")
    group.add_argument("--check", type=Path, help="compare every answer with this JSON file")
    parser.add_argument("--against", metavar="REV", help="also time the responder at git REV")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    conversations = [json.loads(line) for line in args.set.read_text().splitlines() if line]
    limit = load_settings().nectar_bots.responder.passages
    current = _Timed("current", "nectar.chat.responders")
    with tempfile.TemporaryDirectory(prefix="nectar-bench-") as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/kb.db"
        migrations.upgrade(url)
        jar = asyncio.run(_store_kb(url))
        _clear(current.modules)
        keys, questions, answers = asyncio.run(_questions(url, jar, conversations, limit))
    starts = {i for i, key in enumerate(keys) if key.endswith("#1")}

    produced = [_as_json(a) for a in answers]
    status = 0
    if args.record:
        args.record.write_text(json.dumps(dict(zip(keys, produced, strict=True)), indent=1) + "\n")
    if args.check:
        golden = json.loads(args.check.read_text())
        differ = [k for k, p in zip(keys, produced, strict=True) if golden.get(k) != p]
        missing = set(golden) - set(keys)
        if differ or missing:
            status = 1
            for k in differ[:10]:
                print(f"DIFFERS {k}:\n  golden   {golden.get(k)}")
            print(f"{len(differ)} of {len(keys)} answers differ, {len(missing)} missing")
        else:
            print(f"all {len(keys)} answers identical to {args.check}")

    timed = [current]
    if args.against:
        timed.append(_Timed(f"at {args.against}", _at_revision(args.against)))
    for t in timed:
        t.time_cold(questions)
    if current.first != produced:
        print("current: the cold pass's answers differ from the first pass's")
        status = 1
    profiler = cProfile.Profile() if args.profile else None
    for _ in range(args.repeat):
        for mode in ("repeat", "new messages"):
            for t in timed:
                if profiler and t is current and mode == "repeat":
                    profiler.enable()
                again = t.time_pass(mode, questions, starts)
                if profiler:
                    profiler.disable()
                # The caches must not change an answer.
                if [_as_json(a) for a in again] != t.first:
                    print(f"{t.label}: {mode} pass answers differ from the first pass's")
                    status = 1
    report = {
        "turns": len(questions),
        "passages_per_turn": round(statistics.mean(len(q.passages) for q in questions), 1),
        "load_average": list(os.getloadavg()),
        **{t.label: t.report() for t in timed},
    }
    if args.against:
        old, new = timed[1].report(), current.report()
        report["speed_up"] = {
            mode: round(old[mode]["best_median_us"] / new[mode]["best_median_us"], 1)
            for mode in ("repeat", "new messages")
        }
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=1))
    if profiler:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
    return status


if __name__ == "__main__":
    sys.exit(main())
