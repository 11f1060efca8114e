"""The interpreter's gc freeze has one owner (tfpipe.gc_freeze): a user's release never undoes
another user's freeze, in whatever order they end, and a freeze made outside is left alone."""
import gc

import pytest

from tfpipe.gc_freeze import FreezeHold, holders


@pytest.fixture(autouse=True)
def unfrozen():
    gc.unfreeze()
    assert holders() == 0, "a freeze hold left by an earlier test (a ModelManager not closed?)"
    yield
    gc.unfreeze()


def test_a_run_ending_inside_the_servers_freeze_leaves_it_frozen():
    server = FreezeHold()  # the model server: freezes over anything
    with FreezeHold(exclusive=True) as run:  # a pipeline run: freezes only when alone
        run.collect_and_freeze()
        assert run.froze and gc.get_freeze_count() > 0
        server.collect_and_freeze(collect_frozen=True)  # a model loaded during the run
    assert gc.get_freeze_count() > 0  # the run ended; the server's models stay frozen
    server.release()
    assert gc.get_freeze_count() == 0 and holders() == 0


def test_either_order_of_release_unfreezes_only_at_the_last():
    a, b = FreezeHold(), FreezeHold()
    a.collect_and_freeze()
    b.collect_and_freeze(collect_frozen=True)
    a.release()
    assert gc.get_freeze_count() > 0
    b.release()
    assert gc.get_freeze_count() == 0
    a.collect_and_freeze()
    b.collect_and_freeze()
    b.release()
    assert gc.get_freeze_count() > 0
    a.release()
    assert gc.get_freeze_count() == 0


def test_a_run_inside_the_servers_freeze_only_collects():
    server = FreezeHold()
    server.collect_and_freeze()
    frozen = gc.get_freeze_count()
    with FreezeHold(exclusive=True) as run:
        run.collect_and_freeze()
        assert not run.froze
    assert gc.get_freeze_count() >= frozen - 50  # not undone (a few frozen objects may be freed meanwhile)
    server.release()
    assert gc.get_freeze_count() == 0


def test_a_freeze_made_outside_the_holds_is_never_undone():
    keep = [object() for _ in range(10)]
    gc.freeze()
    with FreezeHold(exclusive=True) as run:
        run.collect_and_freeze()
        assert not run.froze
    server = FreezeHold()
    server.collect_and_freeze()
    server.release()
    assert gc.get_freeze_count() > 0
    del keep


def test_releasing_a_hold_that_never_froze_changes_nothing():
    server = FreezeHold()
    server.collect_and_freeze()
    idle = FreezeHold()
    idle.release()
    with FreezeHold(exclusive=True):
        pass
    assert gc.get_freeze_count() > 0
    server.release()
    assert gc.get_freeze_count() == 0
