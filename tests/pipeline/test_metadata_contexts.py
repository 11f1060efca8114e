"""Parallel tasks of one run share its pipeline_run context: recording an execution must not
write back the context properties this process read earlier (MLMD's put_execution with
contexts upserts them), or a parallel task's FAILED status is lost."""
from tfpipe.metadata import MetadataStore


def test_publishing_an_execution_keeps_what_a_parallel_task_recorded_on_the_run(tmp_path):
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    run = store.context("pipeline_run", "p.r1", {"status": "RUNNING"})
    node = store.context("node", "p.Side")
    stale = [store.context("pipeline_run", "p.r1"), node]  # as a task reads them when it starts
    e = store.new_execution("Side", {"node_id": "Side"}, stale, {})
    other = MetadataStore(str(tmp_path / "m.sqlite"))  # a parallel task's node fails meanwhile
    other.update_context(other.context("pipeline_run", "p.r1"), {"status": "FAILED", "error": "boom"})
    store.publish_execution(e, "COMPLETE", {"node_id": "Side"}, stale, {})
    props = store.props(store.context("pipeline_run", "p.r1"))
    assert props["status"] == "FAILED" and props["error"] == "boom"
    assert [x.id for x in store.executions_by_context(run)] == [e.id]  # still in the run
    assert [x.id for x in store.executions_by_context(node)] == [e.id]


def test_a_call_that_keeps_losing_its_connection_is_an_error_not_none(tmp_path):
    """Each attempt gets a new client (the store reconnects); when the last attempt also fails
    as a lost connection, the caller gets the one-line MetadataError naming the store, never
    a silent None in place of the call's answer."""
    import pytest

    from tfpipe.metadata import MetadataError
    store = MetadataStore(str(tmp_path / "m.sqlite"))
    calls = []

    def lost():
        calls.append(store.store)
        raise RuntimeError("mysql_query failed: errno: Lost connection to MySQL server during query")

    with pytest.raises(MetadataError, match=r"m\.sqlite: 3 calls in a row failed .*Lost connection"):
        store._retry(lost, attempts=3)
    assert len(calls) == 3 and len({id(c) for c in calls}) == 3  # a new client for each attempt
    assert store.context("pipeline_run", "p.r1", {"status": "RUNNING"}) is not None  # the store still works
