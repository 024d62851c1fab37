"""Articles as the builtin responder reads them: blocks of sentences and list lines.

A help article is a run of paragraphs, many opened by a bold label ("**Cancelling:** go to
..."), and lists with a lead-in line ("In **Share > Link settings** you can choose:"). The
reply is cut from these pieces, so they keep their wording (menu paths, prices, limits) and
lose only the markdown.
"""

from __future__ import annotations

import functools
import operator
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from nectar.chat.responders.lexicon import vocabulary
from nectar.knowledge.search import Hit

_ITEM = re.compile(r"^\s*(?:[-*+]|(\d+)[.)])\s+")
_LABEL = re.compile(r"^\*\*([^*]{1,80}?)[:.?]?\*\*[:.?]?\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9*\"'(`])")
# A quantity ("10 GB", "$8", "600"), not a digit inside a name ("v2", "2FA", "AES-256").
_NUMBER = re.compile(r"(?<![\w.-])\d+(?:[.,]\d+)?(?![\w/])")
_DURATION = re.compile(
    r"\b(?:\d+|one|two|three|a few)[\s-]*(?:minute|hour|day|week|month|year|business day)s?\b"
    r"|\b(?:immediately|right away|straight away|at once)\b",
    re.IGNORECASE,
)
# A menu path ("Settings > Security") or an instruction to act on the interface.
_ACTION = re.compile(
    r"\w\s+>\s+\w|\b(?:click|tap|choose|select|open|go to|run|type|enter|switch on|turn on)\b",
    re.IGNORECASE,
)


def plain(text: str) -> str:
    """Markdown emphasis, code marks and list markers out; the words and menu paths stay."""
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])[*_]([^*_\n]+)[*_](?![\w*])", r"\1", text)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    return text.strip()


@dataclass(frozen=True, slots=True)
class Unit:
    """A sentence, a list item or a list's lead-in line."""

    index: int  # position in the article
    block: int
    kind: str  # "sentence", "item", "step" or "lead"
    marker: str  # "- " or "2. " for list lines
    text: str  # plain text, as it goes into a reply
    vocab: frozenset[str]
    words: int
    has_number: bool
    has_duration: bool
    has_action: bool
    # What the unit says it is about: its own "Label:", or the bold lead-in it opens with.
    label_vocab: frozenset[str] = frozenset()
    # The bold lead-in of its paragraph, which the unit is about too.
    context_vocab: frozenset[str] = frozenset()
    # Its words and its label's: what the unit itself says.
    own_vocab: frozenset[str] = frozenset()


@dataclass(slots=True)
class Block:
    """A paragraph, or a list with its lead-in; ``label`` is a bold lead-in ("Cancelling")."""

    label: str
    label_vocab: frozenset[str]
    units: list[Unit] = field(default_factory=list)
    vocab: frozenset[str] = frozenset()  # the label's and every unit's, once parsed

    @property
    def is_list(self) -> bool:
        return any(u.kind in ("item", "step") for u in self.units)


# Where in an article a word stem is, as the bits of one int (see ``Article.places``): a
# question's few words are looked up once each, and a term's places are combined with ``|``.
IN_TEXT = 1  # anywhere: the article's vocab
IN_TITLE = 2  # its title and section headings
IN_LABELS = 4  # a bold lead-in or a list line's label
FIRST_BLOCK = 3  # block b (one with units) is bit FIRST_BLOCK + b


@dataclass(slots=True)
class Article:
    """The retrieved chunks of one document, in document order."""

    document_id: uuid.UUID
    title: str
    hits: list[Hit]
    rank: int  # position of its best chunk in the search results
    blocks: list[Block]
    units: list[Unit]
    vocab: frozenset[str]
    title_vocab: frozenset[str]
    label_vocab: frozenset[str]  # every bold lead-in and list-line label: what it is organised by
    text: str  # plain text of the whole retrieved body, for finding earlier replies
    # Where each word stem is, so that a question's few words are looked up instead of every
    # block and unit being searched for them: ``places`` for the article's own sets and its
    # blocks (IN_TEXT, IN_TITLE, IN_LABELS and the blocks' bits), ``unit_words`` the units
    # whose own_vocab has it (by index).
    places: dict[str, int]
    words: frozenset[str]  # every stem with a place
    unit_words: dict[str, tuple[int, ...]]
    labelled: tuple[int, ...]  # the blocks with a bold lead-in, by index

    @property
    def best_hit(self) -> Hit:
        return max(self.hits, key=_SCORE)


_CHUNK_ID = operator.attrgetter("chunk_id")
_SCORE = operator.attrgetter("score")


def articles(hits: list[Hit]) -> list[Article]:
    """Group the search results by document, keeping the order of the best chunk."""
    # By the id's integer: a UUID hashes in Python, an int in C.
    groups: dict[int, tuple[int, list[Hit]]] = {}
    for rank, hit in enumerate(hits):
        seen = groups.get(hit.document_id.int)
        if seen is None:
            groups[hit.document_id.int] = (rank, [hit])
        else:
            seen[1].append(hit)
    # In the order of their best chunks, as the groups were first seen.
    result = []
    for rank, group in groups.values():
        if len(group) > 1:
            group.sort(key=_CHUNK_ID)
        parsed = _ParsedArticles.get(group)
        # Positionally: _Parsed holds the rest of Article's fields in Article's order, and a
        # dozen keyword arguments per article cost more than the rest of this loop.
        result.append(Article(group[0].document_id, group[0].title, group, rank, *parsed))
    return result


class _Parsed(NamedTuple):
    """Article's fields after ``rank``, in the same order (``articles`` relies on it)."""

    blocks: list[Block]
    units: list[Unit]
    vocab: frozenset[str]
    title_vocab: frozenset[str]
    label_vocab: frozenset[str]
    text: str
    places: dict[str, int]
    words: frozenset[str]
    unit_words: dict[str, tuple[int, ...]]
    labelled: tuple[int, ...]


class _ParsedArticles:
    """Parsed articles, by their chunks' ids, each with the text it was parsed from.

    The same passages come back turn after turn: each article is parsed once. Hashing a
    dozen passages' text on every turn (a key of the text itself) costs more than comparing
    it with the text remembered under the same ids, which is a memcmp; a document edited
    since has other text, and is parsed again. Nothing downstream changes a parsed article,
    so sharing them is safe. One per process, as functools' caches are, and emptied the same
    way (``cache_clear``).
    """

    MAX_ARTICLES = 2048
    _parsed: ClassVar[dict[tuple[int, ...], tuple[str, tuple[tuple[str, str], ...], _Parsed]]] = {}

    @classmethod
    def get(cls, group: list[Hit]) -> _Parsed:
        """The parsed article of one document's hits, in chunk order."""
        ids = tuple([h.chunk_id for h in group])
        title = group[0].title
        texts = tuple([(h.heading, h.body) for h in group])
        seen = cls._parsed.get(ids)
        if seen is not None and seen[0] == title and seen[1] == texts:
            return seen[2]
        parsed = _parse(title, tuple([(h.chunk_id, h.heading, h.body) for h in group]))
        if seen is None and len(cls._parsed) >= cls.MAX_ARTICLES:
            del cls._parsed[next(iter(cls._parsed))]  # the longest kept
        cls._parsed[ids] = (title, texts, parsed)
        return parsed

    @classmethod
    def cache_clear(cls) -> None:
        cls._parsed.clear()


def _parse(title: str, chunks: tuple[tuple[int, str, str], ...]) -> _Parsed:
    # Section headings below the title are part of what the article is about.
    headings = " ".join(dict.fromkeys(heading for _, heading, _ in chunks))
    body = "\n\n".join(text for _, _, text in chunks)
    blocks = parse_blocks(body)
    units = [u for b in blocks for u in b.units]
    vocab = frozenset(vocabulary(f"{headings} {plain(body)}"))
    title_vocab = frozenset(vocabulary(headings or title))
    label_vocab = frozenset().union(*(u.label_vocab for u in units))
    places: dict[str, int] = {}
    for bit, words in ((IN_TEXT, vocab), (IN_TITLE, title_vocab), (IN_LABELS, label_vocab)):
        for word in words:
            places[word] = places.get(word, 0) | bit
    for i, block in enumerate(blocks):
        if block.units:
            for word in block.vocab:
                places[word] = places.get(word, 0) | 1 << (FIRST_BLOCK + i)
    return _Parsed(
        blocks=blocks,
        units=units,
        vocab=vocab,
        title_vocab=title_vocab,
        label_vocab=label_vocab,
        text=_squash(plain(body)),
        places=places,
        words=frozenset(places),
        unit_words=_where((u.index, u.own_vocab) for u in units),
        labelled=tuple([b for b, block in enumerate(blocks) if block.label_vocab]),
    )


def _where(places: Iterable[tuple[int, frozenset[str]]]) -> dict[str, tuple[int, ...]]:
    """Word stem -> the places (by index) whose vocabulary has it."""
    where: dict[str, list[int]] = {}
    for index, vocab in places:
        for word in vocab:
            where.setdefault(word, []).append(index)
    return {word: tuple(indices) for word, indices in where.items()}


def parse_blocks(body: str) -> list[Block]:
    blocks: list[Block] = []
    count = 0

    def add(kind: str, raw: str, marker: str = "") -> None:
        nonlocal count
        text = plain(raw)
        if not text:
            return
        block = blocks[-1]
        head = text.split(":", 1)[0] if ":" in text[:60] else ""
        label = vocabulary(head) if head and len(head.split()) <= 5 else set()
        lead = next((u for u in block.units if u.kind == "lead"), None) if marker else None
        vocab = frozenset(vocabulary(text))
        label_vocab = frozenset(label) | (block.label_vocab if not block.units else frozenset())
        block.units.append(
            Unit(
                index=count,
                block=len(blocks) - 1,
                kind=kind,
                marker=marker,
                text=text,
                vocab=vocab,
                words=len(text.split()),
                has_number=bool(_NUMBER.search(text)),
                has_duration=bool(_DURATION.search(text)),
                has_action=bool(_ACTION.search(text)) or bool(lead and lead.has_action),
                label_vocab=label_vocab,
                context_vocab=block.label_vocab,
                own_vocab=vocab | label_vocab,
            )
        )
        count += 1

    for paragraph in re.split(r"\n\s*\n", body):
        lines = _logical_lines(paragraph)
        if not lines:
            continue
        match = _LABEL.match(lines[0])
        follows_lead = bool(blocks and blocks[-1].units and blocks[-1].units[-1].kind == "lead")
        if not (follows_lead and _ITEM.match(lines[0])):
            label = match.group(1).strip() if match else ""
            blocks.append(Block(label, frozenset(vocabulary(label))))
        for line in lines:
            item = _ITEM.match(line)
            if item:
                number = item.group(1)
                marker = f"{number}. " if number else "- "
                add("step" if number else "item", line[item.end() :], marker)
                continue
            pieces = [s for s in _SENTENCE_END.split(line) if s.strip()]
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                add("lead" if last and piece.rstrip().endswith(":") else "sentence", piece)
    for block in blocks:
        block.vocab = block.label_vocab.union(*(u.vocab for u in block.units))
    return blocks


def _logical_lines(paragraph: str) -> list[str]:
    """Source lines joined back into sentences and list items: a wrapped line continues the
    one before unless it starts a list item."""
    lines: list[str] = []
    for raw in paragraph.splitlines():
        line = raw.strip()
        if not line:
            continue
        if lines and not _ITEM.match(raw) and not lines[-1].endswith(":"):
            lines[-1] += " " + line
        else:
            lines.append(line)
    return lines


def render(units: list[Unit]) -> str:
    """Units back into text: sentences of one block run on, list lines stay lines."""
    lines: list[str] = []
    previous: Unit | None = None
    for unit in units:
        if unit.marker:
            lines.append(unit.marker + unit.text)
        elif previous is not None and previous.block == unit.block and previous.kind == "sentence":
            lines[-1] += " " + unit.text
        else:
            lines.append(unit.text)
        previous = unit
    return "\n".join(lines)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


@functools.lru_cache(maxsize=1024)
def reply_lines(reply: str) -> tuple[str, ...]:
    """An earlier bot reply as ``contains_reply`` looks for it: the beginnings of its lines."""
    lines = [_squash(re.sub(r"^(?:- |\d+[.)] )", "", line)) for line in reply.splitlines()]
    return tuple(line[:80] for line in lines if len(line) >= 12)


def contains_reply(article: Article, lines: tuple[str, ...]) -> bool:
    """Whether an earlier bot reply (its ``reply_lines``) was cut from this article."""
    # map() over the text's own __contains__ keeps the loop in C.
    return bool(lines) and sum(map(article.text.__contains__, lines)) * 2 >= len(lines)
