"""A task module for tests/test_datetime_types.py: regex, imported at its top, refuses own-GIL
interpreters (single-phase init), so its functions' calls move to the fallback lane."""

from __future__ import annotations

import regex


def letters(text: str) -> bool:
    return regex.fullmatch(r"\p{L}+", text) is not None
