"""Operator actions between nights, each committed to the state as a new version:
marking transfer files as sent, and recording decisions on holds (append-only)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from engine import standing, state
from engine.errors import InputError, StateError

DECISIONS = ("release", "deny")


def _store(state_dir: Path) -> state.Store:
    store = state.Store(state_dir)
    if not store.head().number:
        msg = f"no state in {state_dir}\n\nHint: run a night first (`kyufu run`)."
        raise StateError(msg)
    return store


def files(state_dir: Path, status: str | None = None) -> pl.DataFrame:
    """The transfer files the engine produced, optionally only those with `status`."""
    table = _store(state_dir).head().table("files")
    return table.filter(pl.col("status") == status) if status else table


def mark_sent(state_dir: Path, names: list[str], sent_by: str, sent_on: date) -> state.Version:
    """Record that the operator sent these files to the bank; a sent file is never produced again."""
    store = _store(state_dir)
    head = store.head()
    try:
        updated = standing.mark_sent(head.table("files"), names, sent_on, sent_by)
    except ValueError as exc:
        msg = f"nothing was marked sent:\n{exc}\n\nHint: `kyufu files list --state {state_dir}` lists them."
        raise StateError(msg) from None
    return store.commit(head, {"files": updated}, {"kind": "files_sent", "files": names, "by": sent_by,
                                                   "on": sent_on.isoformat()})


def holds(state_dir: Path, *, status: str | None = "open", reason: str | None = None,
          municipality: str | None = None, wallets: bool = False) -> pl.DataFrame:
    """Holds as of the latest night (benefit households, or Mynapoint wallets), with the
    decision in force, filtered."""
    head = _store(state_dir).head()
    table = head.table("point_holds" if wallets else "holds").join(
        standing.latest_decisions(head.table("decisions")), on="hold_id", how="left")
    reasons = "reasons" if wallets else "hold_reasons"
    if status:
        table = table.filter(pl.col("status") == status)
    if reason:
        table = table.filter(pl.col(reasons).list.contains(reason))
    if municipality and not wallets:
        table = table.filter(pl.col("municipality_code") == municipality)
    return table.sort("hold_id")


def record_decisions(state_dir: Path, decisions: pl.DataFrame, source: str) -> state.Version:
    """Append operator decisions (hold_id, decision, decided_by, decided_on, note) to the state.

    Every decision is kept; the latest one for a hold is in force from the next night on.
    Raises InputError naming every bad row at once (unknown hold, decision not release/deny,
    a decision on a hold that is not open).
    """
    store = _store(state_dir)
    head = store.head()
    known = pl.concat([head.table("holds").select("hold_id", "status"),
                       head.table("point_holds").select("hold_id", "status")])
    rows = decisions.with_columns(
        pl.col("note").fill_null(""), source=pl.lit(source)
    ).join(known, on="hold_id", how="left")
    problems = []
    for hold, decision, status in rows.select("hold_id", "decision", "status").iter_rows():
        if decision not in DECISIONS:
            problems.append(f"  {hold}: decision {decision!r} is not one of {DECISIONS}")
        elif status is None:
            problems.append(f"  {hold}: no such hold")
        elif status != "open":
            problems.append(f"  {hold}: the hold is {status}, not open")
    missing = rows.filter(pl.col("decided_by").is_null() | (pl.col("decided_by") == ""))
    if missing.height:
        problems.append(f"  {missing.height} decision(s) without decided_by")
    if problems:
        msg = f"{source}: no decision was recorded:\n" + "\n".join(problems[:20])
        raise InputError(msg)
    new = rows.select(state.SCHEMAS["decisions"].names())
    merged = pl.concat([head.table("decisions"), new], how="vertical_relaxed")
    return store.commit(head, {"decisions": merged}, {"kind": "decisions", "source": source,
                                                      "count": new.height})
