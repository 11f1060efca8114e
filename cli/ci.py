"""``tfpipe ci``: what a change to the repository asks of continuous training. Runs on the
standard library alone (retrain.yml installs tfpipe without its dependencies)."""
from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_OK, UsageError, compile_file

__all__ = ["add_commands"]


def cmd_ci_plan(args) -> int:
    from tfpipe.tracking.ci_plan import CiPlanError, format_plan, make_plan
    try:
        plan = make_plan(args.repo, args.base, args.head, args.config)
    except CiPlanError as e:
        raise UsageError(str(e)) from None
    print(json.dumps(plan.to_dict(), indent=2) if args.json else format_plan(plan))
    return EXIT_OK


def cmd_ci_module_params(args) -> int:
    from tfpipe.tracking.ci_plan import module_overrides
    overrides, unused = module_overrides(compile_file(args.pipeline), args.files, args.module_root)
    for f in unused:
        print(f"tfpipe: warning: module file {f} is not a parameter of any node of {args.pipeline} "
              f"(uploaded, but only a module that imports it will see it)", file=sys.stderr)
    for name, value in sorted(overrides.items()):
        print(f"{name}={value}")
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:
    ci = sub.add_parser("ci", help="continuous training helpers").add_subparsers(dest="sub", required=True)
    cp = ci.add_parser("plan", help="what a change between two commits asks for: full_rebuild, "
                                    "modules_only, data_only or nothing (rules in tfpipe-ci.toml)")
    cp.add_argument("--base", required=True, help="base commit; empty or 000..0 = every file of head is new")
    cp.add_argument("--head", required=True, help="head commit")
    cp.add_argument("--config", help="rules file (default: tfpipe-ci.toml at the repository root)")
    cp.add_argument("--repo", default=".", help="git repository (default: current directory)")
    cp.add_argument("--json", action="store_true")
    cp.set_defaults(fn=cmd_ci_plan)
    cm = ci.add_parser("module-params", help="NAME=VALUE pipeline parameters that point a pipeline's "
                                             "module_file parameters at uploaded copies (modules-only retrain)")
    cm.add_argument("pipeline")
    cm.add_argument("--module-root", required=True, help="where the files were uploaded, e.g. /gcs/BUCKET/modules/SHA")
    cm.add_argument("--files", nargs="*", default=[], metavar="FILE", help="repository-relative module file paths")
    cm.set_defaults(fn=cmd_ci_module_params)
