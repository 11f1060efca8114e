"""A node that fails on its first attempt and succeeds on the next (Airflow retries).

``FLAKY_MARKER`` (compile time): a path; the first attempt creates it and raises.
"""
import os

from tfpipe import Input, Output, Pipeline, String, component


@component(name="FlakyStart")
def start(text: Output[String], message: str = "default") -> None:
    with open(os.path.join(text.uri, "value"), "w") as f:
        f.write(message)


@component(name="Flaky")
def flaky(text: Input[String], echoed: Output[String], marker: str = "") -> None:
    with open(os.path.join(echoed.uri, "value"), "w") as f:
        f.write("half-written")
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError(f"flaky: first attempt fails (created {marker})")
    with open(os.path.join(text.uri, "value")) as src, open(os.path.join(echoed.uri, "value"), "w") as f:
        f.write(src.read())


def create_pipeline() -> Pipeline:
    s = start(message="default")
    f = flaky(text=s.outputs.text, marker=os.environ.get("FLAKY_MARKER", ""))
    return Pipeline(name="flaky", components=[s, f],
                    settings={"retries": 1, "retry_delay_s": 0, "execution_timeout_s": 600})
