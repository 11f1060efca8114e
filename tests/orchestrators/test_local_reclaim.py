"""A sequential local run gives back, between nodes, what a node left for the cyclic garbage
collector, and leaves the interpreter's gc state as it found it."""
import gc

import pytest

from tfpipe import Input, JsonValue, Output, Pipeline, compile_pipeline, component
from tfpipe.gc_freeze import FreezeHold
from tfpipe.orchestrators.local import LocalRunner
from tfpipe.orchestrators.local import runner as local_runner

FINALIZED: list[str] = []


class _Marker:
    def __init__(self, name: str):
        self.name = name
        self.cycle = [self]  # reachable only through a reference cycle once the node returns

    def __del__(self):
        FINALIZED.append(self.name)


@component(name="LeaveCycle")
def LeaveCycle(out: Output[JsonValue], name: str = "first") -> None:
    _Marker(name)
    out.write(name)


@component(name="SeeCollected")
def SeeCollected(left: Input[JsonValue], out: Output[JsonValue]) -> None:
    out.write(left.read() in FINALIZED)


SERVERS: list[FreezeHold] = []


@component(name="ServeModel")
def ServeModel(left: Input[JsonValue], out: Output[JsonValue]) -> None:
    """What a model server started in the run's process does after loading (ModelManager.settle)."""
    server = FreezeHold()
    server.collect_and_freeze(collect_frozen=True)
    SERVERS.append(server)
    out.write(True)


def _run(tmp_path, run_id):
    leave = LeaveCycle(name=run_id)
    see = SeeCollected(left=leave.outputs.out)
    p = Pipeline("reclaim", [leave, see], root=str(tmp_path / "root"), metadata=str(tmp_path / "md.sqlite"))
    res = LocalRunner(verbose=False, parallel=1).run(compile_pipeline(p), run_id=run_id, enable_cache=False)
    assert res.ok, res.error
    out = [r for r in res.nodes if r.node_id == "SeeCollected"][0].outputs["out"][0]
    from tfpipe.metadata import MetadataStore
    return MetadataStore(str(tmp_path / "md.sqlite")).get_artifacts([out.id])[0].read()


@pytest.fixture
def reclaim_after(monkeypatch):
    """Sets the shortest node run that is followed by a collection (these nodes take ms)."""
    return lambda s: monkeypatch.setattr(local_runner, "_RECLAIM_AFTER_S", s)


def test_a_nodes_reference_cycles_are_collected_before_the_next_node_and_the_freeze_undone(tmp_path, reclaim_after):
    reclaim_after(0.0)
    gc.unfreeze()  # a freeze an earlier test in this process left held (a model server it did not close)
    gc.disable()  # only the runner's collection between the nodes can find the cycle
    try:
        assert gc.get_freeze_count() == 0
        assert _run(tmp_path, "r1") is True
        assert gc.get_freeze_count() == 0  # what the run froze is back in the oldest generation
    finally:
        gc.enable()


def test_a_freeze_made_by_someone_else_is_left_alone(tmp_path, reclaim_after):
    reclaim_after(0.0)
    gc.disable()
    keep = [object() for _ in range(10)]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert _run(tmp_path, "r2") is True  # still collected between the nodes
        # neither undone (0) nor added to (the run made thousands of objects); a few frozen
        # objects may have been freed by their reference counts meanwhile
        assert frozen - 50 <= gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
        gc.enable()
        del keep


def test_a_short_node_is_not_followed_by_a_collection(tmp_path, reclaim_after):
    reclaim_after(60.0)  # a resolver, a cache lookup: the collection would cost more than they did
    gc.disable()
    try:
        assert _run(tmp_path, "r3") is False
    finally:
        gc.enable()


def test_a_run_ending_leaves_the_freeze_of_a_model_server_started_during_it(tmp_path, reclaim_after):
    reclaim_after(0.0)  # the run freezes after each node, so it holds a freeze when the server freezes
    gc.unfreeze()
    leave = LeaveCycle(name="r4")
    serve = ServeModel(left=leave.outputs.out)
    p = Pipeline("reclaim", [leave, serve], root=str(tmp_path / "root"), metadata=str(tmp_path / "md.sqlite"))
    res = LocalRunner(verbose=False, parallel=1).run(compile_pipeline(p), run_id="r4", enable_cache=False)
    assert res.ok, res.error
    try:
        assert gc.get_freeze_count() > 0  # the run ended; the server's loaded models stay frozen
    finally:
        SERVERS.pop().release()
    assert gc.get_freeze_count() == 0  # the server closed: nothing of either is frozen
