"""The contract pipeline: trivial components, one of which fails while a flag file exists.

    Source -> Boom -> Sink
           \\-> Side          (an independent branch)

Configured by environment variables read when the pipeline is created (compile time):
``CONTRACT_FAIL_FLAG`` (path of the flag file; Boom raises while it exists).
"""
import os

from tfpipe import Examples, Input, Output, Pipeline, String, component


@component(name="ContractSource")
def source(examples: Output[Examples], rows: int = 5) -> None:
    os.makedirs(examples.uri, exist_ok=True)
    with open(os.path.join(examples.uri, "data.txt"), "w") as f:
        f.write("\n".join(str(i) for i in range(rows)) + "\n")


@component(name="ContractSide")
def side(examples: Input[Examples], count: Output[String]) -> None:
    with open(os.path.join(examples.uri, "data.txt")) as f:
        n = len(f.read().split())
    with open(os.path.join(count.uri, "value"), "w") as f:
        f.write(str(n))


@component(name="ContractBoom")
def boom(examples: Input[Examples], checked: Output[Examples], fail_flag: str = "") -> None:
    with open(os.path.join(checked.uri, "partial.txt"), "w") as f:
        f.write("written before the failure; must never become LIVE\n")
    if fail_flag and os.path.exists(fail_flag):
        raise ValueError(f"contract: boom asked to fail (flag file {fail_flag} exists)")
    with open(os.path.join(examples.uri, "data.txt")) as f:
        values = [int(x) for x in f.read().split()]
    with open(os.path.join(checked.uri, "data.txt"), "w") as f:
        f.write("\n".join(str(2 * v) for v in values) + "\n")


@component(name="ContractSink")
def sink(examples: Input[Examples], total: Output[String]) -> None:
    with open(os.path.join(examples.uri, "data.txt")) as f:
        s = sum(int(x) for x in f.read().split())
    with open(os.path.join(total.uri, "value"), "w") as f:
        f.write(str(s))


def create_pipeline() -> Pipeline:
    src = source(rows=5)
    sd = side(examples=src.outputs.examples)
    bm = boom(examples=src.outputs.examples, fail_flag=os.environ.get("CONTRACT_FAIL_FLAG", ""))
    sk = sink(examples=bm.outputs.checked)
    return Pipeline(name="contract", components=[src, sd, bm, sk])
