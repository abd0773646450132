"""Terminal output of the CLI's bulk commands: a progress bar with rate, the summary table."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

from imgest.bulk import Outcome, Summary
from imgest.jobs.progress import progress_bar

MAX_LISTED = 50  # rejected/failed files listed by name; the rest are counted


@contextmanager
def progress(total: int) -> Iterator[Callable[[Outcome], None]]:
    """A progress bar on stderr; yields the callback that advances it by one outcome."""
    with progress_bar("uploading", total, unit="files") as advance:
        yield lambda outcome: advance(1)


def _file(o: Outcome) -> dict[str, Any]:
    top = None if o.top is None else dataclasses.asdict(o.top)
    return {
        "path": str(o.job.path),
        "status": o.status,
        "id": o.image_id,
        "sent": o.sent,
        "reason": o.reason,
        "top": top,
        "answer": o.answer,
    }


def _file_line(o: Outcome) -> str:
    """`status  id  file  top-1 score (model@pipeline)`, or the reason it was not stored."""
    if o.status in ("rejected", "failed"):
        what = o.reason
    elif o.top is None:
        what = "no prediction"
    else:
        what = f"{o.top.label} {o.top.score:.3f} ({o.top.model}@{o.top.pipeline})"
    return f"{o.status:<8}  {o.image_id or '-':<64}  {o.job.path.name}  {what}"


def render_summary(summary: Summary, *, as_json: bool = False, files: bool = False) -> None:
    """Print the counts (and each rejected or failed file with its reason) to stdout.

    `files` adds each file: one line with its id, status and top-1 prediction, or in JSON the
    server's full answer under `files`.
    """
    console = Console(soft_wrap=True)
    problems = [o for o in summary.outcomes if o.status in ("rejected", "failed")]
    conflicts = [o for o in summary.outcomes if o.label == "conflict"]
    if as_json:
        body: dict[str, Any] = {
            **summary.counts(),
            "problems": [
                {"path": str(o.job.path), "status": o.status, "reason": o.reason} for o in problems
            ],
            "conflicts": [{"path": str(o.job.path), "label": o.job.label} for o in conflicts],
        }
        if files:
            body["files"] = [_file(o) for o in summary.outcomes]
        console.print_json(json.dumps(body))
        return
    if files:
        for o in summary.outcomes:
            console.print(_file_line(o), markup=False, highlight=False)
    counts = Table(title="imgest upload summary", show_header=True, box=None)
    counts.add_column("status")
    counts.add_column("files", justify="right")
    c = summary.counts()
    counts.add_row("created", str(c["created"]))
    counts.add_row("existing", str(c["existing"]))
    counts.add_row("  of which skipped by hash", str(c["skipped"]))
    counts.add_row("  of which got new tags", str(c["existing_tagged"]))
    counts.add_row("  of which got their label", str(c["existing_labelled"]))
    clash = c["label_conflicts"]
    counts.add_row("label conflicts (kept)", str(clash), style="yellow" if clash else None)
    counts.add_row("rejected", str(c["rejected"]), style="red" if c["rejected"] else None)
    counts.add_row("failed", str(c["failed"]), style="red" if c["failed"] else None)
    console.print(counts)
    rows = [(o, o.status, o.reason) for o in problems] + [
        (o, "label conflict", f"stored with another label; {o.job.label!r} not applied")
        for o in conflicts
    ]
    if not rows:
        return
    listing = Table(title="rejected and failed files, label conflicts", show_header=True, box=None)
    listing.add_column("file", overflow="fold")
    listing.add_column("status")
    listing.add_column("reason", overflow="fold")
    for o, status, reason in rows[:MAX_LISTED]:
        listing.add_row(str(o.job.path), status, reason)
    console.print(listing)
    if len(rows) > MAX_LISTED:
        console.print(f"... and {len(rows) - MAX_LISTED} more")
