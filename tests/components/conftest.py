"""Shared fixtures for tests/components.

``penguin_model``: the penguin pipeline up to the Trainer (data half, Transform, Trainer), a
copy of the session's penguin store as its run ``store-trained`` left it (tests/conftest.py),
shared by the Transform, Trainer, Tuner and end-to-end tests of this session.
"""
import pytest


@pytest.fixture(scope="session")
def penguin_model(penguin_store, tmp_path_factory):
    from examples.penguin.pipeline import create_pipeline
    from tests.conftest import copy_penguin_store, penguin_kw
    from tfpipe import compile_pipeline
    from tfpipe.metadata import MetadataStore
    from tfpipe.tracking.records import show_run
    tmp = tmp_path_factory.mktemp("penguin_model")
    copy_penguin_store(penguin_store.trained, tmp)
    kw = penguin_kw(tmp)
    ir = compile_pipeline(create_pipeline(**kw))
    store = MetadataStore(kw["metadata"])
    outs = {e["node_id"]: {k: v[0] for k, v in store.io_of(e["execution_id"])[1].items()}
            for e in show_run(store, "store-trained")["executions"]}
    assert set(outs) == {"ExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer"}, outs
    return {"tmp": tmp, "kw": kw, "ir": ir, "run_id": "store-trained", "outputs": outs}


def tfpipe_cli(*args, **kw):
    from tests.conftest import tfpipe
    return tfpipe(*args, **kw)


def bad_module(tmp_path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.fixture(scope="session")
def run_penguin_node(penguin_model):
    """Run one node of a variant of the penguin pipeline (same name and store, so the
    upstream outputs resolve from the shared run): returns the RunResult."""
    from examples.penguin.pipeline import create_pipeline
    from tfpipe import compile_pipeline
    from tfpipe.orchestrators.local import LocalRunner

    def run(node: str, **kw):
        ir = compile_pipeline(create_pipeline(**penguin_model["kw"], **kw))
        return LocalRunner(verbose=False).run(ir, from_node=node, to_node=node)
    return run

