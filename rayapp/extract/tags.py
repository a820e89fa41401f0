"""The extractor's tag format: ``<reason>...</reason><extract>...</extract>`` and ``<answer>...</answer>``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

__all__ = ["Parsed", "parse_tags"]


@dataclass
class Parsed:
    fields: dict[str, Optional[str]] = field(default_factory=dict)
    well_formed: bool = False
    problems: list[str] = field(default_factory=list)

    def get(self, tag: str) -> str:
        return self.fields.get(tag) or ""


def parse_tags(text: str, tags: list[str]) -> Parsed:
    """Contents of each ``<tag>...</tag>`` in ``text``. Well formed means: every tag opens and closes
    exactly once, in the order given, and no tag pair sits inside another. A malformed text still
    yields what can be read (the first complete pair of each tag), with the problems named."""
    out = Parsed()
    spans = []
    for tag in tags:
        opens = [m.start() for m in re.finditer(re.escape(f"<{tag}>"), text)]
        closes = [m.start() for m in re.finditer(re.escape(f"</{tag}>"), text)]
        m = re.search(re.escape(f"<{tag}>") + r"(.*?)" + re.escape(f"</{tag}>"), text, re.S)
        out.fields[tag] = m.group(1).strip() if m else None
        if not opens or not closes:
            out.problems.append(f"<{tag}> missing")
        elif len(opens) > 1 or len(closes) > 1:
            out.problems.append(f"<{tag}> repeated")
        elif closes[0] < opens[0]:
            out.problems.append(f"</{tag}> before <{tag}>")
        else:
            spans.append((tag, opens[0], closes[0] + len(f"</{tag}>")))
    for a, b in zip(spans, spans[1:]):
        if b[1] < a[2]:
            out.problems.append(f"<{b[0]}> inside or before the end of <{a[0]}>")
    out.well_formed = not out.problems
    return out
