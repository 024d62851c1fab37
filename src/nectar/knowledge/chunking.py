"""Turn a document into searchable chunks that keep their headings.

Markdown headings (and HTML h1-h6, converted first) open sections; every chunk carries the
path of headings above it ("Title > Section"), so a paragraph is found by what its section is
about as well as by its own words. Long sections are split at paragraph boundaries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

MAX_WORDS = 160
# A closing run of #s needs a space before it: "## Learn C#" keeps its "#".
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_LIST_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s")


@dataclass(frozen=True, slots=True)
class ChunkText:
    position: int
    heading: str
    body: str


def _paragraphs(lines: list[str]) -> list[str]:
    """Blank-line separated blocks; a list stays one block with its lead-in line."""
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            blocks[-1].append(line.rstrip())
        elif blocks[-1]:
            blocks.append([])
    merged: list[str] = []
    for block in (b for b in blocks if b):
        text = "\n".join(block)
        is_list = bool(_LIST_ITEM.match(block[0]))
        # A list joins its lead-in ("To reset it:") and, while under the cap, the items before
        # it (a "loose" list with blank lines between items, as HTML <li>s become).
        joins = bool(merged) and is_list and merged[-1].rstrip().endswith(":")
        if merged and is_list and not joins and _LIST_ITEM.match(merged[-1].splitlines()[-1]):
            joins = len(merged[-1].split()) + len(text.split()) <= MAX_WORDS
        if joins:
            merged[-1] += "\n" + text
        else:
            merged.append(text)
    return merged


def _split(paragraphs: list[str]) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    words = 0
    for para in paragraphs:
        n = len(para.split())
        if current and words + n > MAX_WORDS:
            parts.append("\n\n".join(current))
            current, words = [], 0
        current.append(para)
        words += n
    if current:
        parts.append("\n\n".join(current))
    return parts


def chunk_markdown(title: str, text: str) -> list[ChunkText]:
    sections: list[tuple[list[str], list[str]]] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    title_key = title.strip().lower()

    def close() -> None:
        names = [name for _, name in path]
        if not names or names[0].strip().lower() != title_key:
            names = [title.strip(), *names]
        sections.append((names, list(lines)))

    fence: str | None = None
    for line in text.splitlines():
        # "# comment" inside a fenced code block is code, not a heading.
        opening = _FENCE.match(line)
        if opening and (fence is None or opening.group(1) == fence):
            fence = None if fence else opening.group(1)
        match = None if fence or opening else _HEADING.match(line)
        if match:
            if any(part.strip() for part in lines):
                close()
            lines.clear()
            level, name = len(match.group(1)), _strip_inline(match.group(2))
            path = [(lvl, n) for lvl, n in path if lvl < level] + [(level, name)]
        else:
            lines.append(line)
    if any(part.strip() for part in lines) or not sections:
        close()

    chunks: list[ChunkText] = []
    for names, body_lines in sections:
        heading = " > ".join(n for n in names if n)
        for part in _split(_paragraphs(body_lines)) or [""]:
            if part.strip() or not chunks:
                chunks.append(ChunkText(len(chunks), heading, part.strip()))
    return chunks


def _strip_inline(text: str) -> str:
    return re.sub(r"[*_`]+", "", text).strip()


class _HTMLToMarkdown(HTMLParser):
    _BLOCK = {"p", "div", "br", "li", "tr", "section", "article", "ul", "ol", "table", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "noscript"):
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.out.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in self._BLOCK:
            self.out.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "noscript"):
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self._BLOCK:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_markdown(html: str) -> str:
    parser = _HTMLToMarkdown()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def chunk_document(title: str, content: str, content_type: str) -> list[ChunkText]:
    if content_type == "text/html":
        content = html_to_markdown(content)
    return chunk_markdown(title, content)
