"""The handoff detector: every trigger against one turn, at most one decision."""

from nectar.handoffs.detection.detector import detect

__all__ = ["detect"]
