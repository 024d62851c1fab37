"""What a trigger reports before the detector settles the urgency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nectar.handoffs.detection.base import Reason


@dataclass(frozen=True, slots=True)
class Finding:
    reason: Reason
    # JSON-ready: which rule fired, which words matched, which score.
    evidence: dict[str, Any] = field(default_factory=dict)
