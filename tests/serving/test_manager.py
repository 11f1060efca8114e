"""The model manager on real (tiny) SavedModels: a label moving between loaded versions is a
pointer swap (no load), versions that left models.config stay warm (bounded) so going back
to them loads nothing, a label moving to a version not loaded yet stays on its old version
until the load finishes while other labels move at once, and a models.config rewrite is
noticed by its stat without the full poll."""
import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tfpipe.serving.config import ModelEntry, write_config
from tfpipe.serving.features import to_examples
from tfpipe.serving.manager import ConfigSource, ModelManager


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Versions 1..4 of a model answering y = x * version, parsing tf.Examples."""
    import tensorflow as tf
    d = tmp_path_factory.mktemp("models") / "m"
    for v in (1, 2, 3, 4):
        class M(tf.Module):
            def __init__(self, k):
                super().__init__()
                self.k = tf.Variable(float(k))

            @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
            def serve(self, examples):
                x = tf.io.parse_example(examples, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
                return {"y": x * self.k}

        m = M(v)
        tf.saved_model.save(m, str(d / str(v)), signatures={"serving_default": m.serve})
    return str(d)


def _config(base, labels, versions):
    write_config(os.path.join(base, "models.config"), [ModelEntry("m", base, versions=versions, labels=labels)])


async def _predict(manager, label):
    s, _ = manager.resolve("m", label=label)
    spec = s.info.parse_specs["serving_default"]
    out = await s.run("serving_default", to_examples([{"x": 2.0}], spec, "instances"))
    return float(out["y"][0][0])


def _run(coro):
    return asyncio.run(coro)


def test_switches_between_loaded_versions_and_warm_versions_load_nothing(base):
    logs = []

    async def scenario():
        ex = ThreadPoolExecutor(2)
        _config(base, {"production": 1}, [1, 2])
        mgr = ModelManager([ConfigSource(os.path.join(base, "models.config"))], ex, poll_s=0, watch_s=0,
                           keep_warm=1, log=logs.append)
        await mgr.start()
        assert await _predict(mgr, "production") == 2.0
        first = {v: s for v, s in mgr.models["m"].versions.items()}
        loads = sum("loaded" in m for m in logs)
        assert loads == 2
        _config(base, {"production": 2}, [1, 2])  # promote: both loaded, a pointer swap
        await mgr.sync()
        assert await _predict(mgr, "production") == 4.0
        assert sum("loaded" in m for m in logs) == loads
        _config(base, {"production": 2}, [2])  # 1 leaves the config: unaddressable, but warm
        await mgr.sync()
        assert 1 not in mgr.models["m"].versions and mgr.summary()["m"]["warm"] == [1]
        _config(base, {"production": 1}, [1])  # back to 1: the same servable, nothing loaded
        await mgr.sync()
        assert mgr.models["m"].versions[1] is first[1] and await _predict(mgr, "production") == 2.0
        assert sum("loaded" in m for m in logs) == loads and mgr.summary()["m"]["warm"] == [2]
        _config(base, {"production": 3}, [3])  # keep_warm=1: 2 is unloaded, 1 stays warm
        await mgr.sync()
        assert mgr.summary()["m"]["warm"] == [1] and await _predict(mgr, "production") == 6.0
        await asyncio.sleep(0)  # the retirement task runs
        await asyncio.sleep(0)
        assert first[2].loaded is None and first[1].loaded is not None
        await mgr.close()
        ex.shutdown()

    _run(scenario())


def test_a_label_waits_for_its_version_while_others_move_at_once(base):
    logs = []

    async def scenario():
        ex = ThreadPoolExecutor(2)
        _config(base, {"production": 2, "staging": 1}, [1, 2])
        mgr = ModelManager([ConfigSource(os.path.join(base, "models.config"))], ex, poll_s=0, watch_s=0,
                           log=logs.append)
        await mgr.start()
        # rollback-like change: production to loaded 1 at once; staging to 4, which must load first
        _config(base, {"production": 1, "staging": 4}, [1, 4])
        logs.clear()
        task = asyncio.get_running_loop().create_task(mgr.sync())
        while not any("production 2 -> 1" in m for m in logs):
            assert not task.done(), logs
            await asyncio.sleep(0.001)
        # switched before 4 finished loading; staging still on 1 meanwhile, never unanswered
        assert not task.done() and "version 4 loaded" not in " ".join(logs)
        assert mgr.resolve("m", label="production")[0].version == 1
        assert mgr.resolve("m", label="staging")[0].version == 1
        await task
        assert await _predict(mgr, "production") == 2.0
        assert await _predict(mgr, "staging") == 8.0
        order = [m for m in logs if "production 2 -> 1" in m or "version 4 loaded" in m or "staging 1 -> 4" in m]
        assert order[0].endswith("production 2 -> 1") and "version 4 loaded" in order[1], logs
        await mgr.close()
        ex.shutdown()

    _run(scenario())


def test_a_config_rewrite_is_noticed_by_its_stat_without_the_full_poll(base):
    async def scenario():
        ex = ThreadPoolExecutor(2)
        _config(base, {"production": 1}, [1, 2])
        mgr = ModelManager([ConfigSource(os.path.join(base, "models.config"))], ex, poll_s=0, watch_s=0.05,
                           log=lambda m: None)
        await mgr.start()
        syncs = mgr.syncs
        for _ in range(5):  # nothing changed: the sources are not re-read
            await asyncio.sleep(0.06)
        assert mgr.syncs == syncs
        _config(base, {"production": 2}, [1, 2])
        for _ in range(600):
            if mgr.models["m"].labels["production"] == 2:
                break
            await asyncio.sleep(0.05)
        assert mgr.models["m"].labels["production"] == 2 and mgr.syncs == syncs + 1
        await mgr.close()
        ex.shutdown()

    _run(scenario())


def test_loaded_models_leave_the_collectors_passes_and_unloaded_ones_are_freed(base):
    """After a load the manager freezes what exists (gc.freeze), so the collector's full
    passes under request load no longer walk the models' objects; a label moving between
    loaded versions freezes nothing (it stays a pointer swap); an unloaded version's
    loaded object is freed, frozen or not."""
    import gc
    import weakref

    async def scenario():
        ex = ThreadPoolExecutor(2)
        gc.unfreeze()
        _config(base, {"production": 1}, [1, 2])
        mgr = ModelManager([ConfigSource(os.path.join(base, "models.config"))], ex, poll_s=0, watch_s=0,
                           keep_warm=0, log=lambda m: None)
        await mgr.start()
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        _config(base, {"production": 2}, [1, 2])  # a pointer swap: no load, no settle
        await mgr.sync()
        assert await _predict(mgr, "production") == 4.0 and gc.get_freeze_count() == 0
        gone = weakref.ref(mgr.models["m"].versions[1].loaded)
        _config(base, {"production": 3}, [3])  # 3 loads; 1 and 2 leave (keep_warm=0): unloaded
        await mgr.sync()
        assert await _predict(mgr, "production") == 6.0 and gc.get_freeze_count() > 0
        for _ in range(3):
            await asyncio.sleep(0)  # the retirement tasks run
        assert gone() is None
        await mgr.close()
        ex.shutdown()
        gc.unfreeze()

    _run(scenario())


def test_a_models_config_that_cannot_be_used_keeps_the_last_good_one(base):
    """TF Serving would unload a model its config no longer names; an empty or undecodable
    file is far more often a mistake than an intent: the last good config keeps serving and
    the error is reported once, on /healthz (problems) and in the log."""
    logs = []

    async def scenario():
        ex = ThreadPoolExecutor(2)
        cfg = os.path.join(base, "models.config")
        _config(base, {"production": 1}, [1, 2])
        mgr = ModelManager([ConfigSource(cfg)], ex, poll_s=0, watch_s=0, log=logs.append)
        await mgr.start()
        for content, says in ((b"", "names no model"), (b"\xff", "not UTF-8"),
                              (None, "no longer names model m")):
            if content is None:
                write_config(cfg, [ModelEntry("other", base, versions=[3])])
            else:
                with open(cfg, "wb") as f:
                    f.write(content)
            for _ in range(3):
                await mgr.sync()
            assert any(says in p for p in mgr.problems()), mgr.problems()
            assert await _predict(mgr, "production") == 2.0 and mgr.ready()
            assert sum(says in m for m in logs) == 1, logs
        assert not any(base in p for p in mgr.problems())
        _config(base, {"production": 2}, [1, 2])
        await mgr.sync()
        assert await _predict(mgr, "production") == 4.0 and "other" in mgr.models
        await mgr.close()
        ex.shutdown()

    _run(scenario())
