"""Shared fixtures for tests/components.

``penguin_model``: ONE run of the penguin pipeline up to the Trainer (data half, Transform,
Trainer), shared by the Transform, Trainer and Tuner tests of this session.
"""
import pytest


@pytest.fixture(scope="session")
def penguin_model(tmp_path_factory):
    from examples.penguin.pipeline import create_pipeline
    from tfpipe import compile_pipeline
    from tfpipe.orchestrators.local import LocalRunner
    tmp = tmp_path_factory.mktemp("penguin_model")
    kw = dict(root=str(tmp / "root"), metadata=str(tmp / "m.sqlite"), train_steps=200)
    ir = compile_pipeline(create_pipeline(**kw))
    r = LocalRunner(verbose=False).run(ir, to_node="Trainer")
    assert r.ok, r.error
    outs = {n.node_id: {k: v[0] for k, v in n.outputs.items()} for n in r.nodes}
    return {"tmp": tmp, "kw": kw, "ir": ir, "run": r, "outputs": outs}


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

