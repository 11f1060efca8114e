"""``tfpipe submit``: send a compiled pipeline to Vertex AI Pipelines or a KFP cluster.

    tfpipe submit PIPELINE.py --target vertex --project P --region R \\
        --pipeline-root gs://BUCKET/root [--service-account SA] [--dry-run]
    tfpipe submit PIPELINE.py --target kubeflow --host URL [--dry-run]

``--dry-run`` compiles, validates (the Vertex job is built by google-cloud-aiplatform's
own ``PipelineJob`` with anonymous credentials, which needs no network) and prints the
job summary as JSON on stdout, without any network access.
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field

from .compiler import compile_kubeflow
from .values import encode

__all__ = ["submit", "SubmitError", "SubmitOptions", "TARGETS"]

TARGETS = ("vertex", "kubeflow")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_NETWORK = re.compile(r"^projects/[0-9]+/global/networks/[a-z]([-a-z0-9]*[a-z0-9])?$")
_SA = re.compile(r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com$")


class SubmitError(ValueError):
    """Bad submit arguments: what was expected and what was found."""


@dataclass(frozen=True)
class SubmitOptions:
    """Where and how to submit (``tfpipe submit``'s flags)."""
    target: str
    project: str | None = None
    region: str | None = None
    pipeline_root: str | None = None
    service_account: str | None = None
    network: str | None = None
    host: str | None = None
    params: dict = field(default_factory=dict)
    run_id: str | None = None
    display_name: str | None = None
    output: str | None = None
    dry_run: bool = False


def _check(args: SubmitOptions) -> None:
    if args.target == "vertex":
        for flag, value, rx, what in (("--project", args.project, _PROJECT, "a GCP project id like my-project"),
                                      ("--region", args.region, _REGION, "a region like us-central1")):
            if not value:
                raise SubmitError(f"--target vertex needs {flag} ({what})")
            if not rx.match(value):
                raise SubmitError(f"{flag}: expected {what}, found {value!r}")
        if not args.pipeline_root or not args.pipeline_root.startswith("gs://"):
            raise SubmitError(f"--pipeline-root: expected a gs://BUCKET/PATH URI, found {args.pipeline_root!r}")
        if args.network and not _NETWORK.match(args.network):
            raise SubmitError(f"--network: expected projects/PROJECT_NUMBER/global/networks/NAME (a VPC peered "
                              f"with Vertex AI), found {args.network!r}")
        if args.service_account and not _SA.match(args.service_account):
            raise SubmitError(f"--service-account: expected NAME@PROJECT.iam.gserviceaccount.com, "
                              f"found {args.service_account!r}")
        if args.host:
            raise SubmitError("--host is for --target kubeflow; Vertex AI is addressed by --project/--region")
    else:
        if args.network:
            raise SubmitError("--network is for --target vertex (a KFP cluster's tasks run in its own network)")
        if not args.host or not re.match(r"^https?://", args.host):
            raise SubmitError(f"--target kubeflow needs --host http(s)://KFP-API-URL, found {args.host!r}")


def _warnings(ir: dict, target: str, network: str | None = None) -> list[str]:
    pl, out = ir["pipeline"], []
    from tfpipe.metadata import describe_location, parse_location
    md = os.environ.get("TFPIPE_METADATA") or pl["metadata"]
    if "sqlite" in parse_location(md):
        out.append(f"the tasks' ML Metadata is the SQLite file {describe_location(md)}; in a cluster set "
                   f"TFPIPE_METADATA to a shared store (mysql://user@host:3306/db, or the ML Metadata gRPC "
                   f"service), see docs/team_setup.md")
    elif target == "vertex" and "mysql" in parse_location(md) and not network:
        out.append(f"the tasks' ML Metadata is the MySQL server {describe_location(md)}; a Vertex AI job reaches a "
                   f"private-IP Cloud SQL instance only over a peered VPC: pass --network "
                   f"projects/NUMBER/global/networks/NAME (or use the Cloud SQL Auth Proxy), see docs/team_setup.md")
    if target == "vertex":
        for n in ir["nodes"]:
            for k, v in sorted(n.get("parameters", {}).items()):
                if isinstance(v, str) and os.path.isabs(v) and not v.startswith("/gcs/"):
                    out.append(f"node {n['id']}: parameter {k} is the local path {v}, which is inside the task's "
                               f"container on Vertex AI; use a gs:// URI (see docs/object_storage.md)")
    return out


def cloud_root(ir: dict, target: str, pipeline_root: str | None) -> dict:
    """The IR with an artifact root the tasks can reach: a pipeline whose root is a local
    path (the default) gets ``<--pipeline-root>/<pipeline>/artifacts`` on Vertex AI, used
    as a gs:// URI directly; a gs:// root, or one under /gcs/ (Cloud Storage FUSE), is kept."""
    root = str(ir["pipeline"]["root"])
    if target != "vertex" or not pipeline_root or root.startswith(("gs://", "/gcs/")):
        return ir
    ir = {**ir, "pipeline": {**ir["pipeline"],
                             "root": f"{pipeline_root.rstrip('/')}/{ir['pipeline']['name']}/artifacts"}}
    return ir


def _summary(ir: dict, pkg: str, args: SubmitOptions, params: dict) -> dict:
    import yaml
    with open(pkg) as f:
        spec = yaml.safe_load(f)
    tasks = spec["root"]["dag"]["tasks"]
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    return {"target": args.target, "pipeline": ir["pipeline"]["name"], "package": pkg,
            "display_name": args.display_name or ir["pipeline"]["name"],
            "tasks": {k: sorted(v.get("dependentTasks", [])) for k, v in tasks.items()},
            "images": sorted(images), "parameters": params,
            "pipeline_parameters": sorted(spec["root"].get("inputDefinitions", {}).get("parameters", {})),
            "warnings": _warnings(ir, args.target, args.network)}


def _vertex_job(pkg: str, args: SubmitOptions, params: dict, dry_run: bool):
    from google.cloud import aiplatform
    creds = None
    if dry_run:
        from google.auth.credentials import AnonymousCredentials
        creds = AnonymousCredentials()
    return aiplatform.PipelineJob(display_name=args.display_name or os.path.basename(pkg).rsplit(".", 1)[0],
                                  template_path=pkg, pipeline_root=args.pipeline_root,
                                  parameter_values=params, project=args.project, location=args.region,
                                  enable_caching=False, credentials=creds)


def submit(ir: dict, **options) -> dict:
    """Compile ``ir`` and submit it (or, with ``dry_run=True``, only validate); returns the
    JSON-able summary that ``tfpipe submit`` prints. ``options`` are the fields of
    :class:`SubmitOptions`."""
    args = SubmitOptions(**options)
    if args.target not in TARGETS:
        raise SubmitError(f"--target: expected one of {list(TARGETS)}, found {args.target!r}")
    _check(args)
    params = dict(args.params or {})
    if args.run_id:
        params["tfpipe_run_id"] = args.run_id
    local_root = ir["pipeline"]["root"]
    ir = cloud_root(ir, args.target, args.pipeline_root)
    work = tempfile.mkdtemp(prefix="tfpipe-submit-")
    pkg = compile_kubeflow(ir, args.output or os.path.join(work, f"{ir['pipeline']['name']}.yaml"))
    out = _summary(ir, pkg, args, params)
    unknown = sorted(set(params) - set(out["pipeline_parameters"]))
    if unknown:
        raise SubmitError(f"--param: no pipeline parameter(s) {unknown}; expected some of "
                          f"{out['pipeline_parameters']}")
    out["dry_run"] = bool(args.dry_run)
    out["artifact_root"] = ir["pipeline"]["root"]
    if out["artifact_root"] != local_root:
        out["warnings"].append(f"the pipeline's artifact root {local_root} is a local path: its tasks use "
                               f"{out['artifact_root']} instead")
    if args.target == "vertex":
        job = _vertex_job(pkg, args, encode(params), args.dry_run)
        out.update(project=args.project, region=args.region, pipeline_root=args.pipeline_root,
                   service_account=args.service_account, network=args.network,
                   parent=f"projects/{args.project}/locations/{args.region}")
        from google.protobuf import json_format
        body = json_format.MessageToDict(job._gca_resource._pb)
        out["runtime_config"] = body.get("runtimeConfig", {})
        if not args.dry_run:
            job.submit(service_account=args.service_account, network=args.network)
            out["job"] = job.resource_name
    else:
        out["host"] = args.host
        if not args.dry_run:
            import kfp
            client = kfp.Client(host=args.host)
            run = client.create_run_from_pipeline_package(pkg, arguments=encode(params),
                                                          run_name=args.display_name or None,
                                                          enable_caching=False)
            out["job"] = run.run_id
    return out
