"""Work deferred until the request is answered: collected inside a handler, at once elsewhere."""

from __future__ import annotations

import asyncio

from multihome import afteranswer


def test_outside_a_request_deferred_work_runs_at_once() -> None:
    done: list[str] = []
    afteranswer.defer(lambda: done.append("now"))
    assert done == ["now"]


async def test_work_deferred_inside_waits_for_run_tasks_started_inside_included() -> None:
    done: list[str] = []
    with afteranswer.collecting() as later:
        afteranswer.defer(lambda: done.append("handler"))
        # A task started inside (the daemon's job) defers into the same request.
        await asyncio.create_task(_defer(done, "job"))
    afteranswer.defer(lambda: done.append("after the request"))
    assert done == ["after the request"]
    later.run()
    assert done == ["after the request", "handler", "job"]
    later.run()  # once
    assert done == ["after the request", "handler", "job"]


async def test_work_deferred_after_the_answer_runs_at_once() -> None:
    done: list[str] = []
    with afteranswer.collecting() as later:
        job = asyncio.create_task(_defer(done, "late"))  # runs once this test awaits it
    later.run()  # answered while the job still runs (answered late)
    await job
    assert done == ["late"]


async def test_a_failing_piece_does_not_keep_the_others_from_running() -> None:
    done: list[str] = []
    with afteranswer.collecting() as later:
        afteranswer.defer(lambda: 1 / 0)
        afteranswer.defer(lambda: done.append("next"))
    later.run()
    assert done == ["next"]


async def _defer(done: list[str], what: str) -> None:
    afteranswer.defer(lambda: done.append(what))
