"""Reading parameter values written as text (command-line NAME=VALUE pairs, data-set names)."""
from __future__ import annotations

from typing import Any


def parse_scalar(text: str) -> Any:
    """'3' -> 3, '0.1' -> 0.1, 'true'/'false'/'none' (any case) -> True/False/None, else the text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)
