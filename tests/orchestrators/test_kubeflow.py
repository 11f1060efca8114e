"""KFP v2 / Vertex AI adapter: the compiled spec (KFP SDK compiler) has one task per node
with the IR's dependencies, the pipeline image and pipeline parameters; kfp.local runs it
(test_contract.py, shared runs); `tfpipe submit --dry-run` validates without network."""
import json
import os

import pytest
import yaml

from tests.conftest import tfpipe

from .conftest import CONTRACT, PENGUIN, compile_file


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    d = tmp_path_factory.mktemp("kfp")
    out = d / "contract.yaml"
    tfpipe("compile", CONTRACT, "--target", "kubeflow", "-o", str(out),
           env={"TFPIPE_HOME": str(d / "home"), "TFPIPE_IMAGE": "registry.example/tfpipe:9"}, check=0)
    with open(out) as f:
        return yaml.safe_load(f)


def test_one_task_per_node_with_ir_dependencies(spec):
    tasks = spec["root"]["dag"]["tasks"]
    assert {k: sorted(v.get("dependentTasks", [])) for k, v in tasks.items()} == {
        "contractsource": [], "contractside": ["contractsource"],
        "contractboom": ["contractsource"], "contractsink": ["contractboom"]}
    assert {v["taskInfo"]["name"] for v in tasks.values()} == {
        "ContractSource", "ContractSide", "ContractBoom", "ContractSink"}
    assert all(v["cachingOptions"] == {} or not v["cachingOptions"].get("enableCache") for v in tasks.values())


def test_tasks_run_the_launcher_in_the_pipeline_image(spec):
    execs = spec["deploymentSpec"]["executors"]
    assert len(execs) == 4
    for e in execs.values():
        c = e["container"]
        assert c["image"] == "registry.example/tfpipe:9"
        src = c["command"][-1]
        assert "from tfpipe.orchestrators.kubeflow.entry import run" in src
        assert "pip install" not in " ".join(c["command"])  # the image already holds the pinned env
        assert "environ" not in src  # a cluster's tasks take their environment from the spec


def test_kfp_local_tasks_set_the_task_host_choice_in_their_own_environment(tmp_path, monkeypatch):
    """kfp.local's subprocesses take only the caller's environment: the runner compiles the
    choice into each task, which sets it for itself; the caller's environment is untouched."""
    from tfpipe.orchestrators import taskhost
    from tfpipe.orchestrators.kubeflow import local as kfp_local
    from tfpipe.orchestrators.kubeflow.local import KfpLocalRunner
    seen = {}

    def run_package(pkg, arguments, root):
        seen["spec"] = yaml.safe_load(open(pkg))
        seen["env"] = os.environ.get(taskhost.ENABLE_ENV)
    monkeypatch.setattr(kfp_local, "run_package", run_package)
    monkeypatch.delenv(taskhost.ENABLE_ENV, raising=False)
    ir = compile_file(CONTRACT, str(tmp_path / "home"))
    KfpLocalRunner(verbose=False, workdir=str(tmp_path / "kfp"), task_host=False).run(ir, run_id="k-env")
    assert seen["env"] is None and taskhost.ENABLE_ENV not in os.environ
    for e in seen["spec"]["deploymentSpec"]["executors"].values():
        assert f"__import__(\"os\").environ.update({{'{taskhost.ENABLE_ENV}': '0'}})" in e["container"]["command"][-1]


def test_pipeline_parameters_are_kfp_parameters(spec):
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["ContractSource__rows"]["parameterType"] == "NUMBER_INTEGER"
    assert params["ContractSource__rows"]["defaultValue"] == 5
    assert params["ContractBoom__fail_flag"]["parameterType"] == "STRING"
    assert "tfpipe_run_id" in params
    src_inputs = spec["root"]["dag"]["tasks"]["contractsource"]["inputs"]["parameters"]
    assert src_inputs["rows"] == {"componentInputParameter": "ContractSource__rows"}
    assert src_inputs["tfpipe_run_id"] == {"componentInputParameter": "tfpipe_run_id"}


def test_submit_vertex_dry_run_prints_the_job(tmp_path):
    p = tfpipe("submit", PENGUIN, "--target", "vertex", "--project", "my-project", "--region", "us-central1",
               "--pipeline-root", "gs://my-bucket/root", "--service-account",
               "runner@my-project.iam.gserviceaccount.com", "--param", "ExampleGen__label_key=species",
               "--dry-run", env={"TFPIPE_HOME": str(tmp_path / "home")}, check=0)
    job = json.loads(p.stdout)
    assert job["dry_run"] is True and job["target"] == "vertex"
    assert job["parent"] == "projects/my-project/locations/us-central1"
    assert job["runtime_config"]["gcsOutputDirectory"] == "gs://my-bucket/root"
    assert job["runtime_config"]["parameterValues"] == {"ExampleGen__label_key": "species"}
    assert job["tasks"]["examplevalidator"] == ["schemagen", "statisticsgen"]
    assert any("TFPIPE_METADATA" in w for w in job["warnings"])  # SQLite is no store for a cluster
    # the tasks use gs:// URIs directly (no /gcs/ FUSE path needed): the local default root is replaced
    assert job["artifact_root"] == "gs://my-bucket/root/penguin/artifacts"
    assert _ir_in_package(job["package"])["pipeline"]["root"] == "gs://my-bucket/root/penguin/artifacts"
    assert any("node Pusher: parameter push_destination is the local path" in w for w in job["warnings"])
    assert any("node ExampleGen: parameter input_base is the local path" in w for w in job["warnings"])


def _ir_in_package(path: str) -> dict:
    """The IR every task of a compiled KFP spec receives (the tfpipe_ir argument)."""
    import yaml

    from tfpipe.orchestrators.kubeflow.values import decode_ir
    with open(path) as f:
        spec = yaml.safe_load(f)
    task = next(iter(spec["root"]["dag"]["tasks"].values()))
    return decode_ir(task["inputs"]["parameters"]["tfpipe_ir"]["runtimeValue"]["constant"])


def test_submit_vertex_keeps_a_gs_or_fuse_root(tmp_path):
    for i, root in enumerate(("gs://team-bucket/penguin", "/gcs/team-bucket/penguin")):
        src = tmp_path / f"pipe{i}.py"
        src.write_text("from tfpipe import Output, Pipeline, String, component\n\n"
                       "@component\ndef hello(out: Output[String], where: str = '') -> None:\n    out.write(where)\n\n"
                       "def create_pipeline():\n"
                       f"    return Pipeline('p', [hello(where={root + '/x'!r})], root={root!r})\n")
        p = tfpipe("submit", str(src), "--target", "vertex", "--project", "my-project", "--region", "us-central1",
                   "--pipeline-root", "gs://my-bucket/root", "--dry-run",
                   env={"TFPIPE_HOME": str(tmp_path / "home")}, check=0)
        job = json.loads(p.stdout)
        assert job["artifact_root"] == root and _ir_in_package(job["package"])["pipeline"]["root"] == root
        assert not any("local path" in w for w in job["warnings"]), job["warnings"]


def test_submit_vertex_with_a_mysql_store_passes_the_vpc_network(tmp_path):
    """A Vertex job reaches a private-IP Cloud SQL store over a peered VPC: --network goes to
    PipelineJob.submit and into the dry-run summary; without it the summary warns."""
    env = {"TFPIPE_HOME": str(tmp_path / "home"),
           "TFPIPE_METADATA": "mysql://ml@10.1.2.3:3306/tfpipe?password_env=DB_PASSWORD"}
    args = ["submit", CONTRACT, "--target", "vertex", "--project", "my-project", "--region", "us-central1",
            "--pipeline-root", "gs://my-bucket/root", "--dry-run"]
    job = json.loads(tfpipe(*args, "--network", "projects/123456/global/networks/ml-vpc", env=env, check=0).stdout)
    assert job["network"] == "projects/123456/global/networks/ml-vpc"
    assert not any("--network" in w for w in job["warnings"])
    job = json.loads(tfpipe(*args, env=env, check=0).stdout)
    assert job["network"] is None and any("--network" in w and "Cloud SQL" in w for w in job["warnings"])


@pytest.mark.parametrize("args, message", [
    (["--target", "vertex", "--project", "my-project", "--region", "us-central1", "--pipeline-root", "/local"],
     "--pipeline-root: expected a gs://BUCKET/PATH URI, found '/local'"),
    (["--target", "vertex", "--region", "us-central1", "--pipeline-root", "gs://b/r"], "needs --project"),
    (["--target", "kubeflow"], "--target kubeflow needs --host"),
    (["--target", "vertex", "--project", "my-project", "--region", "us-central1", "--pipeline-root", "gs://b/r",
      "--network", "my-vpc"], "--network: expected projects/PROJECT_NUMBER/global/networks/NAME"),
    (["--target", "kubeflow", "--host", "http://127.0.0.1:8888", "--network", "projects/1/global/networks/v"],
     "--network is for --target vertex"),
    (["--target", "kubeflow", "--host", "http://127.0.0.1:8888", "--param", "Nope__x=1"],
     "no pipeline parameter(s) ['Nope__x']"),
])
def test_submit_rejects_bad_arguments(tmp_path, args, message):
    p = tfpipe("submit", CONTRACT, *args, "--dry-run", env={"TFPIPE_HOME": str(tmp_path / "h")}, check=2)
    assert message in p.stderr and p.stdout == ""


def test_submit_kubeflow_dry_run(tmp_path):
    p = tfpipe("submit", CONTRACT, "--target", "kubeflow", "--host", "http://127.0.0.1:8888",
               "--param", "ContractSource__rows=7", "--dry-run", env={"TFPIPE_HOME": str(tmp_path / "h")}, check=0)
    job = json.loads(p.stdout)
    assert job["host"] == "http://127.0.0.1:8888" and job["parameters"] == {"ContractSource__rows": 7}
    assert os.path.exists(job["package"])


TYPED = '''
from tfpipe import Integer, Output, Pipeline, component


@component
def scaled(result: Output[Integer], rate: float = 0.5, steps: int = 3, names: list = ()) -> None:
    result.write(int(rate * steps))


def create_pipeline():
    return Pipeline("typed", [scaled(rate=2, steps=4, names=["a"])])
'''


def test_kfp_parameter_types_are_the_declared_types_not_the_values(tmp_path):
    """A float parameter given an int (rate=2) is a float pipeline parameter: the type comes
    from the component's signature, carried by the IR's parameter_specs."""
    src = tmp_path / "typed.py"
    src.write_text(TYPED)
    out = tmp_path / "typed.yaml"
    tfpipe("compile", str(src), "--target", "kubeflow", "-o", str(out), env={"TFPIPE_HOME": str(tmp_path / "h")},
           check=0)
    params = yaml.safe_load(out.read_text())["root"]["inputDefinitions"]["parameters"]
    assert params["scaled__rate"]["parameterType"] == "NUMBER_DOUBLE" and params["scaled__rate"]["defaultValue"] == 2.0
    assert params["scaled__steps"]["parameterType"] == "NUMBER_INTEGER"
    assert params["scaled__names"]["parameterType"] == "LIST"
    ir = json.loads(tfpipe("compile", str(src), env={"TFPIPE_HOME": str(tmp_path / "h")}, check=0).stdout)
    assert ir["nodes"][0]["parameter_specs"] == {"rate": {"type": "float", "default": 0.5},
                                                 "steps": {"type": "int", "default": 3},
                                                 "names": {"type": "list", "default": []}}
