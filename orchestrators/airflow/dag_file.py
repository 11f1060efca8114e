"""A tfpipe pipeline as an Airflow DAG.

``tfpipe compile --target airflow -o DAGS`` copies this file, unchanged, to
``DAGS/<pipeline>.py`` beside the pipeline's ``DAGS/<pipeline>.ir.json``. When Airflow
parses it, it reads that IR (JSON data) and builds the DAG from it: one task per node, with
the IR's dependencies, each running ``python -m tfpipe.orchestrators.task`` -> the launcher.
Nothing of a pipeline ever becomes code here, and every value that reaches a templated
field of an operator (paths, node ids, the image, environment values, the IR itself) is
wrapped in Airflow's ``literal()``, so Jinja renders only this file's own templates: the
run id and ``dag_run.conf`` (whose values the task receives as JSON data).

Parsing imports the standard library and Airflow only; it never imports tfpipe, TensorFlow
or Beam (this file runs in Airflow's own virtualenv).

- run id: the Airflow run's ``run_id`` (or ``tfpipe_run_id`` in ``dag_run.conf``);
  pipeline parameters: ``dag_run.conf`` (``{"Trainer__train_steps": 500}``);
- ``settings`` of the pipeline: ``retries``, ``retry_delay_s``, ``execution_timeout_s``;
  ``airflow_operator``: ``"bash"`` (default) or ``"kubernetes"`` (a KubernetesPodOperator
  per task in the pipeline image: ``image``, ``namespace``, ``env``); ``task_host`` (bash
  tasks, default true: tasks fork from the worker's warm task host);
- the runtime interpreter of bash tasks: ``$TFPIPE_PYTHON`` in the worker's environment,
  else the one recorded at compile time (``airflow.python`` in the IR file);
- the cache check: a first task, ``tfpipe.cache_check`` (a dot: no node id can take it),
  upstream of every node task (not only the roots: its skip then reaches every task in one
  pass of the scheduler instead of one pass per level of the DAG), plans the run (``python -m tfpipe.orchestrators.task
  --cache-check``). When every node is a cache hit it records their CACHED executions and
  exits 99, mapped to "skipped" on that task only, so every node task is skipped and the
  DAG run ends after one task; otherwise it records nothing and the node tasks run. Off with
  ``settings["cache_check"] = False``, and for a pipeline whose cache is off. Node tasks map
  no exit code to "skipped" (a node that exits 99 failed).
"""
import datetime
import json
import os

RUN_ID = "{{ run_id }}"
CONF = "{{ (dag_run.conf or {}) | tojson }}"
TASK = '"${TFPIPE_PYTHON:-$TFPIPE_PYTHON_DEFAULT}" -m tfpipe.orchestrators.task --ir "$TFPIPE_IR" '
RUN = ' --run "$TFPIPE_RUN_ID" --orchestrator airflow --params "$TFPIPE_PARAMS"'
COMMAND = TASK + '--node "$TFPIPE_NODE"' + RUN
CHECK_COMMAND = TASK + "--cache-check" + RUN
CHECK_TASK_ID = "tfpipe.cache_check"
SKIP_EXIT_CODE = 99  # tfpipe.orchestrators.task.SKIP_EXIT_CODE (this file never imports tfpipe)


def build(ir_path: str):
    """The DAG of the IR file at ``ir_path``."""
    from airflow.sdk import DAG, literal

    with open(ir_path) as f:
        ir = json.load(f)
    pl, spec = ir["pipeline"], ir.get("airflow") or {}
    s = pl.get("settings") or {}
    timeout = s.get("execution_timeout_s")
    default_args = {"retries": int(s.get("retries", 0)),
                    "retry_delay": datetime.timedelta(seconds=float(s.get("retry_delay_s", 60))),
                    "execution_timeout": datetime.timedelta(seconds=float(timeout)) if timeout else None}
    with DAG(dag_id=pl["name"], schedule=None, start_date=datetime.datetime(2024, 1, 1), catchup=False,
             default_args=default_args, tags=["tfpipe"],
             doc_md="tfpipe pipeline " + pl["name"] + "; parameters via dag_run.conf") as dag:
        if spec.get("operator", "bash") == "kubernetes":
            tasks, check = _pod_tasks(ir, spec, literal)
        else:
            tasks, check = _bash_tasks(ir, spec, ir_path, literal)
        for n in ir["nodes"]:
            for u in n["upstream"]:
                tasks[u] >> tasks[n["id"]]
            if check is not None:  # every task, not only the roots: a skip reaches all at once
                check >> tasks[n["id"]]
    return dag


def _wants_check(ir: dict) -> bool:
    pl = ir["pipeline"]
    return bool((pl.get("settings") or {}).get("cache_check", True) and pl.get("enable_cache", True))


def _bash_tasks(ir: dict, spec: dict, ir_path: str, literal) -> dict:
    from airflow.providers.standard.operators.bash import BashOperator

    host = "1" if spec.get("task_host", True) else "0"
    base = {"TFPIPE_RUN_ID": RUN_ID, "TFPIPE_PARAMS": CONF, "TFPIPE_IR": literal(ir_path),
            "TFPIPE_PYTHON_DEFAULT": literal(spec.get("python") or "python3"), "TFPIPE_TASK_HOST": host}
    tasks = {}
    for n in ir["nodes"]:
        tasks[n["id"]] = BashOperator(task_id=n["id"], bash_command=COMMAND,
                                      env={**base, "TFPIPE_NODE": literal(n["id"])}, append_env=True,
                                      skip_on_exit_code=None, doc_md="node " + n["id"] + " (" + n["component"] + ")")
    check = None
    if _wants_check(ir):
        check = BashOperator(task_id=CHECK_TASK_ID, bash_command=CHECK_COMMAND, env=base, append_env=True,
                             skip_on_exit_code=SKIP_EXIT_CODE, retries=0,
                             doc_md="every node from the cache when all are hits (then the others are skipped)")
    return tasks, check


def _pod_tasks(ir: dict, spec: dict, literal) -> dict:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    ir_json = json.dumps(ir, sort_keys=True)
    env = {k: literal(str(v)) for k, v in (spec.get("env") or {}).items()}
    run = ["--run", RUN_ID, "--orchestrator", "airflow", "--params", CONF]

    def pod(task_id: str, name: str, what: list, **kw):
        return KubernetesPodOperator(
            task_id=task_id, name=literal(name), image=literal(spec["image"]),
            namespace=literal(spec.get("namespace") or "default"), env_vars=env,
            cmds=["python", "-m", "tfpipe.orchestrators.task"], arguments=["--ir-json", literal(ir_json), *what, *run],
            get_logs=True, on_finish_action="delete_succeeded_pod", **kw)
    tasks = {n["id"]: pod(n["id"], "tfpipe-" + n["id"].lower().replace("_", "-"), ["--node", literal(n["id"])])
             for n in ir["nodes"]}
    check = None
    if _wants_check(ir):
        check = pod(CHECK_TASK_ID, "tfpipe-cache-check", ["--cache-check"], skip_on_exit_code=SKIP_EXIT_CODE,
                    retries=0)
    return tasks, check


if not __name__.startswith("tfpipe."):  # as a DAG file in Airflow's dags folder (not imported as tfpipe's)
    dag = build(os.path.splitext(os.path.abspath(__file__))[0] + ".ir.json")
