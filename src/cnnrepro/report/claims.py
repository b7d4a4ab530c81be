"""Report sections for the chapter's claims, one per claim, from the records in `claims/<name>.json`.

A claim without a record is listed with the command that measures it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnrepro.report.build import Section, Table, read_json


def _overrides_line(record: dict[str, Any]) -> str:
    shared = ", ".join(f"{k}={v}" for k, v in record.get("overrides", {}).items())
    seeds = ", ".join(str(s) for s in record.get("seeds", []))
    seed_keys = ", ".join(record.get("seed_keys", [])) or "the measurement's random seed"
    line = f"Profile {record.get('profile', '?')}; seeds {seeds} (set in {seed_keys})"
    line += f"; overrides on every point: {shared}." if shared else "; no overrides of the profile."
    return line


def _experiments_line(record: dict[str, Any]) -> str:
    experiments = record.get("experiments", [])
    if not experiments:
        return ""
    ran = [e for e in experiments if e.get("rev")]
    names = ", ".join(f"{e['name']} ({e['rev'][:7]})" for e in ran)
    missing = [e["name"] for e in experiments if not e.get("rev")]
    line = f"DVC experiments: {names}."
    if missing:
        line += f" Not run yet: {', '.join(missing)}."
    return line


def claim_section(record: dict[str, Any]) -> Section:
    result = record.get("result", {})
    paragraphs = [
        f"Claim: {record['claim']}",
        f"Source: {record['source']}",
        f"Method: {record['method']}",
        _overrides_line(record),
        f"Verdict: {record.get('verdict')}. Rule: {result.get('rule', '-')}.",
        *result.get("findings", []),
        _experiments_line(record),
        f"Measured {record.get('measured_at', '?')} with `{record.get('command')}`.",
    ]
    tables = []
    if result.get("table"):
        tables.append(Table(result["table"]["columns"], result["table"]["rows"], "Measured (mean ± standard deviation over seeds, n = seeds measured)"))
    for extra in result.get("extra_tables", []):
        tables.append(Table(extra["columns"], extra["rows"], extra.get("caption", "")))
    return Section(f"Claim: {record['title']}", [p for p in paragraphs if p], tables)


def claim_sections(root: Path) -> list[Section]:
    """Return one section per registered claim: its record when measured, else the command that measures it."""
    from cnnrepro.claims import all_claims, record_path

    sections = []
    pending = []
    for claim in all_claims():
        record = read_json(record_path(root, claim.name))
        if record:
            sections.append(claim_section(record))
        else:
            pending.append([claim.name, claim.title, f"cnnrepro claims run {claim.name}", f"about {claim.minutes:g} min"])
    if pending:
        sections.append(Section(
            "Claims not measured yet",
            ["Each command queues the claim's DVC experiments, waits for them and writes claims/<name>.json; "
             "commit that file and run `dvc repro report`."],
            [Table(["claim", "title", "command", "time on 2 CPU cores"], pending)],
        ))
    return sections
