"""The corpus jobs' shared summary lines: nothing to do, or the facts and then the failures."""

from __future__ import annotations

from imgest.jobs.summary import failed_lines, summary_lines


def test_nothing_pending_is_one_line_whatever_the_facts() -> None:
    lines = summary_lines(matched=3, pending=0, have="X", facts=["made 0"], failed=[])
    assert lines == ["nothing to do: all 3 matching images have X"]


def test_pending_work_gives_the_facts_then_one_line_per_failure() -> None:
    failed = [("a" * 64, "original missing"), ("b" * 64, "corrupt")]
    lines = summary_lines(matched=3, pending=2, have="X", facts=["f1", "f2"], failed=failed)
    assert lines == ["f1", "f2", *failed_lines(failed)]
    assert failed_lines(failed) == [
        f"failed {'a' * 64}: original missing",
        f"failed {'b' * 64}: corrupt",
    ]
