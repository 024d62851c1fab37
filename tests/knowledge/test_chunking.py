"""Chunking: documents become searchable pieces that keep the headings above them."""

from __future__ import annotations

from nectar.knowledge.chunking import MAX_WORDS, ChunkText, chunk_document, chunk_markdown


def outline(chunks: list[ChunkText]) -> list[tuple[str, str]]:
    return [(c.heading, c.body) for c in chunks]


def words(n: int, word: str = "lorem") -> str:
    return " ".join(f"{word}{i}" for i in range(n))


def test_headings_become_a_path_from_the_title() -> None:
    text = (
        "# Installing Hivebox\n\nIntro text.\n\n"
        "## On Linux\n\nUse the deb package.\n\n"
        "### Fedora\n\nUse the rpm instead.\n\n"
        "## On macOS\n\nDrag it to Applications.\n"
    )

    chunks = chunk_markdown("Installing Hivebox", text)

    assert outline(chunks) == [
        ("Installing Hivebox", "Intro text."),
        ("Installing Hivebox > On Linux", "Use the deb package."),
        ("Installing Hivebox > On Linux > Fedora", "Use the rpm instead."),
        ("Installing Hivebox > On macOS", "Drag it to Applications."),
    ]
    assert [c.position for c in chunks] == [0, 1, 2, 3]


def test_first_heading_equal_to_the_title_is_not_repeated() -> None:
    chunks = chunk_markdown(
        "Billing FAQ", "# billing faq\n\nAsk us.\n\n## Refunds\n\nWithin 30 days."
    )

    # Compared case-insensitively; the document's own spelling is kept.
    assert [c.heading for c in chunks] == ["billing faq", "billing faq > Refunds"]


def test_a_first_heading_other_than_the_title_goes_under_the_title() -> None:
    chunks = chunk_markdown("Billing", "# Refunds\n\nWithin 30 days.")

    assert outline(chunks) == [("Billing > Refunds", "Within 30 days.")]


def test_heading_markup_and_closing_hashes_are_dropped_but_not_a_trailing_sharp() -> None:
    chunks = chunk_markdown("Guide", "## **Setup** ##\n\nOne.\n\n## Learn C#\n\nTwo.")

    assert [c.heading for c in chunks] == ["Guide > Setup", "Guide > Learn C#"]


def test_a_deeper_heading_is_replaced_by_its_next_sibling() -> None:
    text = "## A\n\n### A1\n\none\n\n### A2\n\ntwo\n\n## B\n\nthree"

    assert [c.heading for c in chunk_markdown("T", text)] == ["T > A > A1", "T > A > A2", "T > B"]


def test_document_without_headings_gets_the_title() -> None:
    chunks = chunk_markdown("Support hours", "We answer from 8 to 18.\n\nNot on Sundays.")

    assert outline(chunks) == [("Support hours", "We answer from 8 to 18.\n\nNot on Sundays.")]


def test_comment_lines_inside_a_code_block_are_not_headings() -> None:
    text = "## Install\n\nRun:\n\n```bash\n# fetch the key first\ncurl -O key\n```\n\nDone."

    chunks = chunk_markdown("CLI", text)

    assert [c.heading for c in chunks] == ["CLI > Install"]
    assert "# fetch the key first" in chunks[0].body


def test_long_section_splits_at_paragraphs_under_the_cap_repeating_the_heading() -> None:
    paragraphs = [words(70, f"p{i}w") for i in range(5)]
    text = "## Sync\n\n" + "\n\n".join(paragraphs)

    chunks = chunk_markdown("Desktop", text)

    assert len(chunks) >= 3
    assert {c.heading for c in chunks} == {"Desktop > Sync"}
    assert all(len(c.body.split()) <= MAX_WORDS for c in chunks)
    # Every paragraph is in exactly one chunk, whole and in order.
    assert [p for c in chunks for p in c.body.split("\n\n")] == paragraphs
    assert [c.position for c in chunks] == list(range(len(chunks)))


def test_a_list_stays_with_its_lead_in_line() -> None:
    lead = words(120, "intro")
    text = (
        f"## Reset\n\n{lead}\n\nTo reset it:\n\n- open Settings\n- choose Security\n- click Reset"
    )

    chunks = chunk_markdown("Password", text)

    holder = [c for c in chunks if "To reset it:" in c.body]
    assert len(holder) == 1
    assert "- open Settings\n- choose Security\n- click Reset" in holder[0].body


def test_a_loose_list_stays_together_even_at_the_word_cap() -> None:
    items = "\n\n".join(f"- step {i}: {words(25, f's{i}w')}" for i in range(4))
    text = f"## Steps\n\n{words(100, 'intro')}\n\nDo this:\n\n{items}"

    chunks = chunk_markdown("Guide", text)

    holder = [c for c in chunks if "Do this:" in c.body]
    assert len(holder) == 1
    assert all(f"- step {i}:" in holder[0].body for i in range(4))


def test_html_converts_to_the_same_structure_as_markdown() -> None:
    html = """<!doctype html>
    <html><head><title>Ignored head title</title><style>p { color: red }</style></head>
    <body>
      <h1>Plans &amp; pricing</h1>
      <p>Three plans.</p>
      <script>document.write("tracking")</script>
      <h2>Team</h2>
      <p>It includes:</p>
      <ul><li>shared folders</li><li>audit logs &lt;90 days&gt;</li></ul>
      <h3>Billing&nbsp;cycle</h3>
      <p>Monthly or yearly.</p>
    </body></html>"""
    markdown = (
        "# Plans & pricing\n\nThree plans.\n\n## Team\n\nIt includes:\n\n"
        "- shared folders\n- audit logs <90 days>\n\n### Billing cycle\n\nMonthly or yearly."
    )

    from_html = chunk_document("Plans & pricing", html, "text/html")

    assert outline(from_html) == outline(
        chunk_document("Plans & pricing", markdown, "text/markdown")
    )
    assert outline(from_html) == [
        ("Plans & pricing", "Three plans."),
        ("Plans & pricing > Team", "It includes:\n- shared folders\n- audit logs <90 days>"),
        ("Plans & pricing > Team > Billing cycle", "Monthly or yearly."),
    ]
    everything = " ".join(c.heading + " " + c.body for c in from_html)
    assert "tracking" not in everything
    assert "color" not in everything
    assert "Ignored head title" not in everything


def test_markdown_content_type_does_not_treat_tags_as_html() -> None:
    chunks = chunk_document("Tags", "Use <b>bold</b> sparingly.", "text/markdown")

    assert outline(chunks) == [("Tags", "Use <b>bold</b> sparingly.")]


def test_plain_text_is_chunked_like_markdown_without_headings() -> None:
    chunks = chunk_document("Notes", "line one\nline two\n\nsecond paragraph", "text/plain")

    assert outline(chunks) == [("Notes", "line one\nline two\n\nsecond paragraph")]


def test_empty_or_blank_content_still_gives_one_chunk_with_the_title() -> None:
    for content in ("", "   \n\n\t\n"):
        assert outline(chunk_markdown("Empty", content)) == [("Empty", "")]
    assert outline(chunk_document("Empty", "<html><script>x()</script></html>", "text/html")) == [
        ("Empty", "")
    ]


def test_a_heading_without_text_under_it_leaves_no_empty_chunk() -> None:
    chunks = chunk_markdown("Guide", "# Guide\n\n## Empty\n\n## Full\n\ntext")

    assert outline(chunks) == [("Guide > Full", "text")]


def test_crlf_line_endings_chunk_like_lf() -> None:
    text = "# Guide\n\nIntro.\n\n## Part\n\nTo do:\n\n- a\n- b\n"

    crlf = chunk_markdown("Guide", text.replace("\n", "\r\n"))

    assert outline(crlf) == outline(chunk_markdown("Guide", text))
    assert not any("\r" in c.heading + c.body for c in crlf)
    assert outline(crlf)[1] == ("Guide > Part", "To do:\n- a\n- b")


def test_a_long_loose_list_splits_between_items_under_the_cap() -> None:
    items = [f"- item {i} {words(40, f'i{i}w')}" for i in range(10)]
    text = "## Checklist\n\nBefore you go:\n\n" + "\n\n".join(items)

    chunks = chunk_markdown("Moving", text)

    assert len(chunks) >= 3
    assert all(len(c.body.split()) <= MAX_WORDS for c in chunks)
    assert chunks[0].body.startswith("Before you go:\n- item 0 ")
    assert [line for c in chunks for line in c.body.splitlines() if line.startswith("- ")] == items
