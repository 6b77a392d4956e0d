"""The fault suite's report: one row per fault (fault, expected, observed, pass), printed at the end
of the pytest session and written to $ZOE_FAULT_REPORT when set (make faults does)."""

from __future__ import annotations

import os
from dataclasses import dataclass

FULL = os.environ.get("ZOE_FAULT_FULL") == "1"  # make faults: 50 repetitions, 2-minute load
ROWS: list[FaultRow] = []


@dataclass
class FaultRow:
    fault: str
    expected: str
    observed: str
    passed: bool


def report(fault: str, expected: str, observed: str, passed: bool) -> None:
    ROWS.append(FaultRow(fault, expected, observed, passed))


def table() -> str:
    lines = ["| fault | expected | observed | pass |", "|---|---|---|---|"]
    lines += [f"| {r.fault} | {r.expected} | {r.observed} | {'yes' if r.passed else 'NO'} |" for r in ROWS]
    return "\n".join(lines)
