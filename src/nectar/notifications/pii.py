"""Scrub personal data from what we send to external platforms.

Replaced with labelled placeholders: email addresses ``[email]``, IBANs ``[iban]`` (only when
the mod-97 check passes), payment card numbers ``[card]`` (13 to 19 digits, only when the
Luhn check passes), US social security numbers ``[ssn]`` (``###-##-####`` with a valid area,
group and serial) and phone numbers ``[phone]``.

Phone numbers have no checksum, so only shapes that are rarely anything else count:

* international: ``+`` or ``00`` then 8 to 15 digits (``+44 20 7946 0958``, ``+4915112345678``);
* North American: ``(415) 555-2671``, ``415-555-2671``, ``415.555.2671``, ``1-800-555-0199``
  (area and exchange codes start with 2-9, as they do in the real numbering plan);
* national with a trunk ``0``: 9 to 12 digits grouped by spaces or dashes (``020 7946 0958``,
  ``06 12 34 56 78``, ``0171 1234567``);
* any 7 to 15 digit number right after a word that announces one ("call me at 555-1234",
  "phone: 4155552671", "mobile 0171...").

Years, prices, versions (``2.14.3``), dates, sizes and short ids (order numbers of 4 to 6
digits) match none of these. Scrubbing is idempotent: the placeholders hold no digits or
``@``, so scrubbing twice changes nothing. Hostile input (long digit runs, many ``@``) is
scrubbed in linear time: no pattern can backtrack across a whole run.

``scrub_view`` covers a handoff's free text; ``scrub_delivery`` also covers the event data
(a cancellation's reason, names). The worker applies ``scrub_delivery`` once to every delivery
it hands to an external channel (``nectar.notifications.tasks``); channels do not scrub again.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import string
from collections.abc import Callable
from typing import Any

from nectar.notifications.channels.base import Delivery, HandoffView

EMAIL = "[email]"
PHONE = "[phone]"
CARD = "[card]"
IBAN = "[iban]"
SSN = "[ssn]"

# Unicode letters are allowed in both parts (internationalised addresses).
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]+@[^\W_](?:[\w-]*[^\W_])?"
    r"(?:\.[^\W_](?:[\w-]*[^\W_])?)*\.[^\W\d_]{2,}\b"
)

# An IBAN starts with a country code and check digits; its body is alphanumeric groups
# separated by single spaces. The body may run into the next words ("... 3000 please"): the
# longest prefix of whole groups that passes mod-97 is what gets replaced.
_IBAN_START = re.compile(r"(?<!\w)[A-Za-z]{2}\d{2}")
_IBAN_BODY = re.compile(r"[A-Za-z0-9]{0,30}(?: [A-Za-z0-9]{1,30}){0,9}")
_IBAN_LENGTH = range(15, 35)
_IBAN_LETTERS = {ord(letter): str(value) for value, letter in enumerate(string.ascii_uppercase, 10)}

_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w]|-\d)")

# Runs of digit groups separated by a single space or dash: a card number hides somewhere in
# a run (the run may start with an order number or end with a year).
_DIGIT_RUN = re.compile(r"(?<![\w.,+-])\d++(?:[ -]\d++)*(?![\w]|[.,-]\d)")
_CARD_DIGITS = range(13, 20)
_CARD_GROUP_MIN = 3  # "4111 1111 1111 1111", "3782 822463 10005", "4111 1111 1111 1111 123"

_INTERNATIONAL = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:\+|\b00)(?=[1-9])(?:[ .-]?(?:\(\d{1,5}\)|\d++)){1,8}"
    r"(?![\w]|[.,-]\d)"
)
_NANP = re.compile(
    r"(?<![\w.+-])(?<!\d[ .-])(?:1[ .-]?)?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-])"
    r"[2-9]\d{2}[ .-]\d{4}(?![\w]|[.,-]\d)"
)
_NATIONAL = re.compile(r"(?<![\w.+-])(?<!\d[ .-])0[1-9]\d*+(?:[ -]\d++){0,4}(?![\w]|[.,-]\d)")
_ANNOUNCED = re.compile(
    r"(?i)\b(?:phone|telephone|tel|mobile|cell|cellphone|call|ring|text|whats\s?app|sms|fax)"
    r"\b(?:\s+(?:number|no\.?|nr\.?|#))?(?:\s+(?:me|us|them))?(?:\s+(?:at|on|is|to))?"
    r"\s*[:#]?\s*(?P<number>\+?\(?\d(?:[ ().-]{0,2}\d){6,14})(?![\w]|[.,-]\d)"
)
_DATE_LIKE = re.compile(r"\d{1,4}([./-])\d{1,2}\1\d{1,4}")
# Every pattern above needs a digit or an "@": text with neither is left as it is, without
# running them (most of a transcript: a notification scrubs a dozen texts).
_MAY_HOLD_PII = re.compile(r"[\d@]")
# Seven digits anywhere (possessive: linear on any text). An email needs an "@", and every
# other kind but an IBAN at least seven digits: SSNs 9, cards 13, phone numbers 7 to 15.
_SEVEN_DIGITS = re.compile(r"(?:\D*+\d){7}")
# A whole value that is a timestamp (an event's occurred_at) holds nothing personal.
_TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?(?:Z|[+-]\d\d:?\d\d)?"
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters become 10..35, and the
    number modulo 97 must be 1."""
    iban = candidate.replace(" ", "").upper()
    if len(iban) not in _IBAN_LENGTH or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    if not iban.isascii() or not iban.isalnum():
        return False
    return int((iban[4:] + iban[:4]).translate(_IBAN_LETTERS)) % 97 == 1


def _digits(text: str) -> str:
    return "".join(char for char in text if char.isdigit())


def _scrub_ibans(text: str) -> str:
    out: list[str] = []
    done = 0
    for start in _IBAN_START.finditer(text):
        if start.start() < done:
            continue
        body = _IBAN_BODY.match(text, start.end())
        assert body is not None  # the body pattern also matches the empty string
        groups = text[start.start() : body.end()].split(" ")
        lengths = list(itertools.accumulate(len(group) for group in groups))
        for end in range(len(groups), 0, -1):
            if lengths[end - 1] not in _IBAN_LENGTH:
                continue
            candidate = " ".join(groups[:end])
            if iban_valid(candidate):
                out.append(text[done : start.start()])
                out.append(IBAN)
                done = start.start() + len(candidate)
                break
    out.append(text[done:])
    return "".join(out)


def _card_window(groups: list[str], start: int) -> int | None:
    """The end of the longest Luhn-valid window of whole groups from ``start`` (13-19 digits;
    each group of a split number has at least 3), or None."""
    found = None
    digits = ""
    for end in range(start, len(groups)):
        digits += groups[end]
        if len(digits) > _CARD_DIGITS.stop - 1:
            break
        single = end == start
        if not single and len(groups[end]) < _CARD_GROUP_MIN:
            break
        if len(digits) in _CARD_DIGITS and luhn_valid(digits):
            found = end + 1
    if found is not None and found - start > 1 and len(groups[start]) < _CARD_GROUP_MIN:
        return None
    return found


def _replace_cards(match: re.Match[str]) -> str:
    """Replace Luhn-valid windows of whole groups in a run of digit groups."""
    text = match.group(0)
    pieces = re.split(r"([ -])", text)  # groups at even indexes, separators at odd ones
    groups = pieces[0::2]
    out: list[str] = []
    start = 0
    consumed = 0  # ``out`` covers ``pieces[:consumed]``
    while start < len(groups):
        end = _card_window(groups, start)
        if end is None:
            start += 1
            continue
        out.append("".join(pieces[consumed : 2 * start]))
        out.append(CARD)
        consumed = 2 * end - 1
        start = end
    out.append("".join(pieces[consumed:]))
    return "".join(out)


def _phone_by_groups(low: int, high: int) -> Callable[[re.Match[str]], str]:
    """Replace the longest prefix of whole groups holding ``low``..``high`` digits (a number
    may be followed by an unrelated one: "020 7946 0958 2024")."""

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if _DATE_LIKE.match(text):  # "05-06-2024 10:30" is a date and a time
            return text
        cuts = [m.start() for m in re.finditer(r"[ .-](?=[\d(])", text)] + [len(text)]
        for cut in reversed(cuts):
            if low <= len(_digits(text[:cut])) <= high:
                return PHONE + text[cut:]
        return text

    return replace


def _replace_announced(match: re.Match[str]) -> str:
    number = match.group("number")
    if _DATE_LIKE.fullmatch(number) or not 7 <= len(_digits(number)) <= 15:
        return match.group(0)
    start = match.start("number") - match.start()
    return match.group(0)[:start] + PHONE


def scrub(text: str) -> str:
    """``text`` with emails, IBANs, SSNs, card numbers and phone numbers replaced."""
    if not text or not _MAY_HOLD_PII.search(text) or _TIMESTAMP.fullmatch(text):
        return text
    if "@" not in text and not _SEVEN_DIGITS.match(text):
        # Most text ("1 user message"): everything but an IBAN needs an "@" or 7 digits.
        return _scrub_ibans(text)
    text = _EMAIL.sub(EMAIL, text)
    text = _scrub_ibans(text)
    text = _SSN.sub(SSN, text)
    text = _DIGIT_RUN.sub(_replace_cards, text)
    text = _INTERNATIONAL.sub(_phone_by_groups(8, 15), text)
    text = _NANP.sub(PHONE, text)
    text = _NATIONAL.sub(_phone_by_groups(9, 12), text)
    return _ANNOUNCED.sub(_replace_announced, text)


def scrub_view(view: HandoffView) -> HandoffView:
    """The same view with every free-text field a user may have typed into scrubbed (a
    name may be an email address)."""
    return dataclasses.replace(
        view,
        summary=scrub(view.summary),
        user_name=scrub(view.user_name) if view.user_name else view.user_name,
        assignee_name=scrub(view.assignee_name) if view.assignee_name else view.assignee_name,
        resolution_notes=(
            scrub(view.resolution_notes) if view.resolution_notes else view.resolution_notes
        ),
        transcript=[
            {**message, "content": scrub(message.get("content", ""))} for message in view.transcript
        ],
    )


def scrub_data(value: Any) -> Any:
    """Every string inside ``value`` (dicts and lists walked) scrubbed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: scrub_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_data(item) for item in value]
    return value


def scrub_delivery(delivery: Delivery) -> Delivery:
    """The delivery as an external platform may see it: the handoff view and the free text of
    the event data (a cancellation's reason, names) scrubbed."""
    return dataclasses.replace(
        delivery,
        handoff=scrub_view(delivery.handoff) if delivery.handoff is not None else None,
        data=scrub_data(delivery.data),
    )
