"""The batcher in front of a signature: requests larger than a batch are split over several
calls and answered whole, in order; a small request is not held behind a large one; a bad
example fails only the request that sent it. A real TensorFlow function stands for the model."""
import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from tfpipe.serving.servable import Batcher, ModelError


@pytest.fixture(scope="module")
def fn():
    import tensorflow as tf

    calls = []

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def parse(examples):
        return {"value": tf.strings.to_number(examples, tf.float64)}

    def call(examples):
        calls.append(int(examples.shape[0]))
        return parse(examples)
    call.calls = calls
    return call


def _run(coro):
    return asyncio.run(coro)


def test_a_request_larger_than_a_batch_is_split_and_answered_whole_in_order(fn):
    fn.calls.clear()

    async def go():
        with ThreadPoolExecutor(1) as ex:
            b = Batcher(fn, "examples", ex, max_batch_size=64)
            try:
                return await b.submit([str(i).encode() for i in range(1000)])
            finally:
                b.close()
    out = _run(go())
    assert out["value"].tolist() == [float(i) for i in range(1000)]
    assert fn.calls == [64] * 15 + [40]  # never more than max_batch_size examples in one call


def test_a_small_request_waits_behind_at_most_one_batch_of_a_large_one(fn):
    fn.calls.clear()

    async def go():
        with ThreadPoolExecutor(1) as ex:
            b = Batcher(fn, "examples", ex, max_batch_size=64)
            try:
                large = asyncio.ensure_future(b.submit([str(i).encode() for i in range(64 * 20)]))
                await asyncio.sleep(0)  # the large request is queued and its first batch handed out
                small = await b.submit([b"7"])
                examples_before = sum(fn.calls)
                return small, await large, examples_before
            finally:
                b.close()
    small, large, n = _run(go())
    assert small["value"].tolist() == [7.0]
    assert len(large["value"]) == 64 * 20
    assert n <= 64 + 64, f"the 1-example request was answered after {n} examples were computed; expected at " \
                         f"most one batch of the large request before its own"
    assert 1 + 64 * 20 == sum(fn.calls)


def test_a_bad_example_fails_its_own_request_only(fn):
    async def go():
        with ThreadPoolExecutor(1) as ex:
            b = Batcher(fn, "examples", ex, max_batch_size=64)
            try:
                good = [b.submit([b"1", b"2"]) for _ in range(3)]
                bad = b.submit([str(i).encode() for i in range(100)] + [b"not a number"])
                return await asyncio.gather(*good, bad, return_exceptions=True)
            finally:
                b.close()
    *good, bad = _run(go())
    assert [g["value"].tolist() for g in good] == [[1.0, 2.0]] * 3
    assert isinstance(bad, ModelError) and bad.bad_input
