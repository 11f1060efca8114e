"""A pipeline whose DAG and whose Beam-based component both run on Beam's portable runner
(embedded job server, LOOPBACK workers: the Job API that Flink/Spark job servers serve)."""
import json
import os

from tfpipe import Examples, Input, JsonValue, Output, Pipeline, component, current

PORTABLE = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]


@component(name="Numbers")
def numbers(examples: Output[Examples], n: int = 100) -> None:
    with open(os.path.join(examples.uri, "numbers.txt"), "w") as f:
        f.write("\n".join(str(i) for i in range(n)) + "\n")


@component(name="BeamSum")
def beam_sum(examples: Input[Examples], result: Output[JsonValue]) -> None:
    import apache_beam as beam
    ctx = current()
    out = os.path.join(ctx.tmp_dir, "sum")
    with ctx.beam_pipeline() as p:
        runner = type(p.runner).__name__
        (p | beam.io.ReadFromText(os.path.join(examples.uri, "numbers.txt"))
           | beam.Map(int) | beam.CombineGlobally(sum) | beam.Map(str)
           | beam.io.WriteToText(out, shard_name_template=""))
    with open(out) as f:
        total = int(f.read())
    with open(os.path.join(result.uri, "value"), "w") as f:
        json.dump({"sum": total, "runner": runner, "args": ctx.beam_pipeline_args}, f)


def create_pipeline() -> Pipeline:
    nums = numbers(n=100)
    s = beam_sum(examples=nums.outputs.examples)
    return Pipeline(name="beam_portable", components=[nums, s], beam_pipeline_args=PORTABLE,
                    settings={"beam_dag_args": PORTABLE})
