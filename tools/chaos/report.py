"""The run's findings: one row per check, printed as a table and written as JSON.

A row is an invariant (``ok`` True or False) or a figure reported for the docs (``ok``
None). The run fails if any invariant does, or if a scenario could not run at all.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.chaos.checks import Issues

# The table's order (rows of other scenarios follow, as they came).
ORDER = (
    "setup",
    "floods",
    "outages",
    "faults",
    "load",
    "durability",
    "hostile text",
    "fuzz AWS JSON",
    "fuzz REST",
    "run",
)


@dataclass
class Row:
    scenario: str
    check: str
    value: str
    ok: bool | None  # None: a figure, not an invariant
    examples: list[str] = field(default_factory=list)


@dataclass
class Report:
    mode: str
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # scenarios that could not run
    started: str = ""
    seconds: float = 0.0

    def invariant(
        self, scenario: str, check: str, ok: bool, value: str, examples: list[str] | None = None
    ) -> None:
        self.rows.append(Row(scenario, check, value, ok, list(examples or [])[:5]))

    def issues(self, scenario: str, check: str, issues: Issues, of: int | None = None) -> None:
        value = f"{issues.count:,}" + (f" of {of:,}" if of is not None else "")
        self.invariant(scenario, check, issues.count == 0, value, issues.examples)

    def figure(self, scenario: str, check: str, value: str) -> None:
        self.rows.append(Row(scenario, check, value, None))

    def failed(self) -> list[Row]:
        return [row for row in self.rows if row.ok is False]

    @property
    def passed(self) -> bool:
        return not self.failed() and not self.errors

    def table(self) -> str:
        headers = ["scenario", "check", "result", "ok?"]
        rows = sorted(
            self.rows, key=lambda r: ORDER.index(r.scenario) if r.scenario in ORDER else len(ORDER)
        )
        lines = [[r.scenario, r.check, r.value, _mark(r.ok)] for r in rows]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]

        def render(cells: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        out = [render(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [render(line) for line in lines]
        failed = self.failed()
        if failed:
            out.append("")
            out.append(f"{len(failed)} invariant(s) violated:")
            for row in failed:
                out.append(f"  - {row.scenario}: {row.check}: {row.value}")
                out += [f"      e.g. {example}" for example in row.examples[:3]]
        for error in self.errors:
            out.append(f"scenario error: {error}")
        return "\n".join(out)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "mode": self.mode,
            "started": self.started,
            "seconds": round(self.seconds, 1),
            "passed": self.passed,
            "violations": [asdict(row) for row in self.failed()],
            "errors": self.errors,
            "rows": [asdict(row) for row in self.rows],
            "figures": self.figures,
        }
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else ("OK" if ok else "FAIL")
