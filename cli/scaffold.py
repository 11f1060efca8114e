"""``tfpipe init DIR``: a new project from the templates shipped in the package
(tfpipe.tracking.scaffold). Standard library only, like the rest of the CLI's top level."""
from __future__ import annotations

import argparse

from .common import EXIT_OK, UsageError

__all__ = ["add_commands"]


def cmd_init(args) -> int:
    from tfpipe.tracking.scaffold import InitError, scaffold
    try:
        files = scaffold(args.directory, name=args.name, bucket=args.bucket or "", orchestrator=args.orchestrator,
                         data=args.data, label=args.label, force=args.force)
    except InitError as e:
        raise UsageError(f"init: {e}") from None
    d = args.directory
    print(f"tfpipe: created a {args.orchestrator} project in {d} ({len(files)} files):")
    for rel in files:
        print(f"  {rel}")
    print(f"next: cd {d} && python -m pytest -q tests && tfpipe run pipeline.py "
          f"(then README.md: the bucket, the repository variables, the first retrain)")
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="make a new project (pipeline, modules, tests, Dockerfile, Cloud Build, "
                                    "GitHub workflows) in a new or empty directory")
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--name", help="project and pipeline name (default: DIR's name)")
    p.add_argument("--orchestrator", default="vertex", choices=["vertex", "kubeflow", "airflow"],
                   help="where the retrain workflow sends the pipeline (default: vertex)")
    p.add_argument("--bucket", metavar="URI",
                   help="s3://BUCKET or gs://BUCKET[/PREFIX]: the default of the one setting root, data and push "
                        "destination follow (default: local; $PIPELINE_BUCKET overrides)")
    p.add_argument("--data", metavar="PATH",
                   help="a CSV file or a folder of CSV files to use instead of the bundled penguin data")
    p.add_argument("--label", metavar="COLUMN", help="the column to predict (default: species)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty directory, only when none of the project's files exists there")
    p.set_defaults(fn=cmd_init)
