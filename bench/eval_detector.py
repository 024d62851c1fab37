"""Replay the handoff evaluation set through the detector, offline, and score it.

    .venv/bin/python bench/eval_detector.py [--set ../shared/eval/dev.jsonl]
        [--url http://127.0.0.1:PORT --user EMAIL --password PASSWORD] [--cache FILE]
        [--refresh] [--verbose] [--json]

Two steps:

1. Answers. Every user turn of every conversation is sent to a Nectar server's chat endpoint
   (the builtin responder over the 32 articles of shared/eval/kb), on a bot created with
   `handoff_enabled: false` so that the server answers every turn whatever its own wiring
   does. Reply and confidence per turn are cached in --cache (default
   /tmp/nectar-eval-answers.json) and reused until --refresh. Without --url the script starts
   its own server (fresh SQLite database, free port on 127.0.0.1) and stops it at the end.
2. Decisions. Each conversation is replayed through `detect()` with TurnFacts built from the
   cached answers, stopping at the first decision, and scored like shared/eval/run.py:
   handoff F1, first-handoff-turn accuracy, reason accuracy (keyword_detected counts as
   explicit_request), urgency exact and within one level, and the categories that must never
   hand off.

The responder's answers change when its code does: run with --refresh after such a change.
Not a test: the numbers are a measurement of the dev set, not a pass/fail gate.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from nectar.chat.responders.base import Answer, HistoryItem
from nectar.handoffs.detection import detect
from nectar.handoffs.detection.base import TriggerSettings, TurnFacts

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = Path(os.environ.get("NECTAR_BENCH_SHARED", REPO.parent / "shared"))
URGENCY = ["low", "medium", "high", "critical"]
SAME_REASON = {"keyword_detected": "explicit_request"}
MUST_NOT_HAND_OFF = ("benign_trigger_words", "negated_or_hypothetical")
# The keywords config/config.yml gives every bot by default.
DEFAULT_KEYWORDS = (
    "speak to a person",
    "talk to a human",
    "human agent",
    "real person",
    "live agent",
)


# --- step 1: answers from a server ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _OwnServer:
    """`nectar serve` on a fresh SQLite database, for the length of a `with`."""

    email = "eval-admin@example.com"
    password = "eval-pass-word-1"

    def __enter__(self) -> _OwnServer:
        self.tmp = tempfile.TemporaryDirectory(prefix="nectar-eval-")
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        nectar = Path(sys.executable).with_name("nectar")
        env = {k: v for k, v in os.environ.items() if not k.startswith("NECTAR_")}
        env |= {
            "NECTAR_DATABASE_URL": f"sqlite+aiosqlite:///{self.tmp.name}/eval.db",
            "NECTAR_ADMIN_EMAIL": self.email,
            "NECTAR_ADMIN_PASSWORD": self.password,
            "NECTAR_HOST": "127.0.0.1",
            "NECTAR_PORT": str(port),
        }
        subprocess.run(
            [nectar, "db", "upgrade"], env=env, cwd=REPO, check=True, capture_output=True
        )
        self.log = open(Path(self.tmp.name) / "serve.log", "wb")
        self.process = subprocess.Popen(
            [nectar, "serve", "--no-access-log"],
            env=env,
            cwd=REPO,
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.__exit__()
        raise SystemExit("the server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
        self.tmp.cleanup()


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    resp = client.request(method, path, **kwargs)
    if resp.status_code not in (200, 201):
        raise SystemExit(f"{method} {path} -> {resp.status_code}: {resp.text[:300]}")
    return resp.json()


def collect(url: str, user: str, password: str, gold: list[dict[str, Any]]) -> dict[str, Any]:
    """Reply and confidence for every user turn, each conversation replayed in full."""
    with httpx.Client(base_url=url, timeout=60) as client:
        token = _call(
            client, "POST", "/api/auth/token", data={"username": user, "password": password}
        )
        client.headers["Authorization"] = f"Bearer {token['access_token']}"
        jar = _call(client, "POST", "/api/honey-jars", json={"name": "Hivebox help center"})
        jar_id = jar["honey_jar"]["id"]
        for path in sorted((SHARED / "eval" / "kb").glob("*.md")):
            text = path.read_text()
            title = text.splitlines()[0].lstrip("# ").strip()
            _call(
                client,
                "POST",
                f"/api/honey-jars/{jar_id}/documents",
                json={"title": title, "content": text},
            )
        bot = _call(
            client,
            "POST",
            "/api/nectar-bots",
            json={
                "name": f"Eval {int(time.time() * 1000)}",
                "honey_jar_ids": [jar_id],
                "rate_limit_per_hour": 1_000_000,
                "rate_limit_per_day": 10_000_000,
                "handoff_enabled": False,
            },
        )["bot"]
        key = {"Authorization": f"Bearer {bot['api_key']}"}
        out: dict[str, Any] = {}
        for conv in gold:
            turns: list[dict[str, Any]] = []
            conversation_id = None
            for text in conv["turns"]:
                body: dict[str, Any] = {"message": text}
                if conversation_id:
                    body["conversation_id"] = conversation_id
                resp = _call(
                    client, "POST", f"/api/nectar-bots/{bot['id']}/chat", json=body, headers=key
                )
                conversation_id = resp["conversation_id"]
                turns.append({"reply": resp.get("reply"), "confidence": resp.get("confidence")})
                if resp.get("handoff"):  # the server handed off although told not to
                    break
            out[conv["id"]] = turns
        return out


# --- step 2: decisions ------------------------------------------------------------------------


def replay(
    conv: dict[str, Any], answers: list[dict[str, Any]], settings: TriggerSettings
) -> dict[str, Any]:
    started = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    history: list[HistoryItem] = []
    result: dict[str, Any] = {
        "handoff_turn": None,
        "reason": None,
        "urgency": None,
        "evidence": None,
    }
    for i, text in enumerate(conv["turns"]):
        if i >= len(answers) or answers[i]["confidence"] is None:
            result["incomplete"] = True
            break
        got = answers[i]
        answer = Answer(got["reply"] or "", float(got["confidence"]))
        turn = TurnFacts(
            message=text,
            history=list(history),
            answer=answer,
            stored_messages=len(history),
            conversation_started_at=started,
            now=started + timedelta(minutes=i),
        )
        decision = detect(turn, settings)
        if decision is not None:
            json.dumps(decision.evidence)  # must be storable as JSON
            result.update(
                handoff_turn=i + 1,
                reason=decision.reason.value,
                urgency=decision.urgency.value,
                evidence=decision.evidence,
            )
            break
        history += [HistoryItem("user", text), HistoryItem("bot", answer.text, answer.confidence)]
    return result


def score(gold: list[dict[str, Any]], pred: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tp = fp = fn = 0
    turn_ok = reason_ok = urgency_ok = urgency_near = 0
    early = late = 0
    per_cat: dict[str, Counter[str]] = defaultdict(Counter)
    misses: dict[str, list[str]] = defaultdict(list)
    for g in gold:
        p = pred[g["id"]]
        positive = p["handoff_turn"] is not None
        cat = per_cat[g["category"]]
        cat["n"] += 1
        problems = []
        if g["handoff"] and positive:
            tp += 1
            reason = SAME_REASON.get(p["reason"], p["reason"])
            reason_ok += reason == g["reason"]
            urgency_ok += p["urgency"] == g["urgency"]
            near = abs(URGENCY.index(p["urgency"]) - URGENCY.index(g["urgency"])) <= 1
            urgency_near += near
            if reason != g["reason"]:
                problems.append(f"reason {p['reason']} (gold {g['reason']})")
            if p["urgency"] != g["urgency"]:
                problems.append(
                    f"urgency {p['urgency']} (gold {g['urgency']}){'' if near else ' FAR'}"
                )
        elif g["handoff"]:
            fn += 1
            problems.append("missed")
        elif positive:
            fp += 1
            problems.append(f"false handoff at {p['handoff_turn']} ({p['reason']})")
        if p["handoff_turn"] == g["at_turn"]:
            turn_ok += 1
            cat["turn_ok"] += 1
        elif positive and g["handoff"]:
            if p["handoff_turn"] < g["at_turn"]:
                early += 1
            else:
                late += 1
            problems.append(f"turn {p['handoff_turn']} (gold {g['at_turn']})")
        if problems:
            misses[g["category"]].append(f"{g['id']}: " + "; ".join(problems))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    forbidden = sum(
        1
        for g in gold
        if g["category"] in MUST_NOT_HAND_OFF and pred[g["id"]]["handoff_turn"] is not None
    )
    return {
        "conversations": len(gold),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "f1": round(f1, 3),
        "turn_accuracy": round(turn_ok / len(gold), 3),
        "early": early,
        "late": late,
        "reason_accuracy": round(reason_ok / tp, 3) if tp else 0.0,
        "urgency_accuracy": round(urgency_ok / tp, 3) if tp else 0.0,
        "urgency_within_one": round(urgency_near / tp, 3) if tp else 0.0,
        "handoffs_on_benign_or_negated": forbidden,
        "turn_accuracy_by_category": {
            k: f"{v['turn_ok']}/{v['n']}" for k, v in sorted(per_cat.items())
        },
        "misses": dict(sorted(misses.items())),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--set", default=str(SHARED / "eval" / "dev.jsonl"))
    ap.add_argument("--url", help="a running server; without it the script starts one")
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument(
        "--cache", default=str(Path(tempfile.gettempdir()) / "nectar-eval-answers.json")
    )
    ap.add_argument("--refresh", action="store_true", help="ask the server again")
    ap.add_argument("--verbose", action="store_true", help="print every conversation's outcome")
    ap.add_argument("--json", action="store_true", help="print the scores as one JSON line")
    args = ap.parse_args()

    gold = [json.loads(line) for line in Path(args.set).read_text().splitlines() if line.strip()]
    cache = Path(args.cache)
    answers: dict[str, Any] = (
        json.loads(cache.read_text()) if cache.exists() and not args.refresh else {}
    )
    if any(g["id"] not in answers for g in gold):
        if args.url:
            answers = collect(args.url, args.user, args.password, gold)
        else:
            with _OwnServer() as server:
                answers = collect(server.url, server.email, server.password, gold)
        cache.write_text(json.dumps(answers))

    settings = TriggerSettings(keywords=DEFAULT_KEYWORDS)
    started = time.perf_counter()
    pred = {g["id"]: replay(g, answers[g["id"]], settings) for g in gold}
    elapsed = time.perf_counter() - started
    result = score(gold, pred)
    turns = sum(
        min(len(g["turns"]), pred[g["id"]]["handoff_turn"] or len(g["turns"])) for g in gold
    )
    result["detect_us_per_turn_cold_caches"] = round(elapsed / max(turns, 1) * 1e6, 1)
    if args.verbose:
        for g in gold:
            p = pred[g["id"]]
            confs = [a["confidence"] for a in answers[g["id"]]]
            print(
                f"{g['id']} {g['category']:<30} gold={g['at_turn']}/{g['reason']}/{g['urgency']}"
                f"  pred={p['handoff_turn']}/{p['reason']}/{p['urgency']}  conf={confs}"
            )
            if p["evidence"]:
                print(f"      {json.dumps(p['evidence'])}")
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if key == "misses":
                print(f"{'misses':>30}:")
                for cat, items in value.items():
                    for item in items:
                        print(f"{'':>32}{cat}: {item}")
            else:
                print(f"{key:>30}: {value}")


if __name__ == "__main__":
    main()
