"""How the benchmarks read what they recorded: probe traffic answers and py-spy's stacks."""

from __future__ import annotations

from testkit.probe_traffic import Answer, first_reached, last_reached
from testkit.py_spy import top_functions

ANSWERS = [
    Answer(1.0, "a"),
    Answer(1.1, "b"),
    Answer(1.2, "a"),
    Answer(1.3, "error:503"),
    Answer(1.4, "b"),
    Answer(1.5, "a"),
]


def test_last_reached_is_the_start_of_the_tasks_last_answer_in_the_window() -> None:
    assert last_reached(ANSWERS, "a", since=1.05, until=1.45) == 1.2


def test_last_reached_is_the_window_start_when_the_task_answered_nothing_in_it() -> None:
    assert last_reached(ANSWERS, "a", since=1.25, until=1.45) == 1.25


def test_first_reached_is_the_start_of_the_tasks_first_answer_from_then_on() -> None:
    assert first_reached(ANSWERS, "a", since=1.25) == 1.5
    assert first_reached(ANSWERS, "c", since=0.0) is None


def test_top_functions_ranks_own_and_total_samples_per_function() -> None:
    collapsed = "\n".join(
        [
            "main (a.py:1);build (b.py:10);render (c.py:5) 6",
            "main (a.py:1);build (b.py:12) 3",
            "main (a.py:2);wait (d.py:7) 1",
        ]
    )
    top = top_functions(collapsed)
    assert top["samples"] == 10
    assert top["own"][0] == ["render (c.py)", 60.0]
    assert ["build (b.py)", 30.0] in top["own"]
    assert top["total"][0] == ["main (a.py)", 100.0]
    assert ["build (b.py)", 90.0] in top["total"]
