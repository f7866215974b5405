"""The collector policy around start-up: rare collections while starting, the usual thresholds and
start-up's objects frozen once serving; calling either twice changes nothing more; no collection
inside `paused`."""

from __future__ import annotations

import gc

from infrakit._utils import collector


def test_defer_then_settle_restores_the_thresholds_and_freezes() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    try:
        collector.defer()
        collector.defer()  # idempotent: the thresholds to restore are the first ones
        assert gc.get_threshold() == collector.START_THRESHOLDS
        collector.settle()
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() > frozen
        collector.settle()  # without a defer: only freezes again
        assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def test_paused_turns_the_collector_off_inside_and_back_on_after_even_on_an_error() -> None:
    assert gc.isenabled()
    try:
        with collector.paused():
            assert not gc.isenabled()
            with collector.paused():  # nested: still off, and the outer block turns it on
                assert not gc.isenabled()
            assert not gc.isenabled()
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()  # it was off before: left off
    finally:
        gc.enable()
