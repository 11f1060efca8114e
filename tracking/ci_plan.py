"""Change detection for continuous training: which paths changed between two commits, and
what that asks of the deployed pipeline.

``tfpipe ci plan --base SHA --head SHA [--json] [--config PATH]`` diffs the two commits
(``git diff --name-status -M``), classifies every changed path with the first rule of a
small declarative TOML file (``tfpipe-ci.toml`` at the repository root) whose glob matches,
and reports the strongest action of all:

    full_rebuild  >  modules_only  >  data_only  >  nothing

A rename counts both of its sides (moving a trainer module into docs/ still changed the
trainer), a deletion counts the deleted path, and an empty or all-zero ``--base`` (the first
push of a branch, a first commit) treats every file of ``head`` as added.

Pure standard library: the CI job runs it before anything heavy is installed.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tomllib

__all__ = ["ACTIONS", "CiPlanError", "Rule", "Change", "Match", "Plan", "load_rules", "glob_to_regex",
           "changed_paths", "classify", "make_plan", "format_plan", "module_overrides", "DEFAULT_CONFIG"]

# Strongest last: the plan's action is the maximum over all changed paths.
ACTIONS = ("nothing", "data_only", "modules_only", "full_rebuild")
DEFAULT_CONFIG = "tfpipe-ci.toml"
_ZERO = re.compile(r"^0+$")


class CiPlanError(Exception):
    """Bad input to ``tfpipe ci plan``: an unknown commit, a broken config, not a repository."""


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    action: str
    patterns: tuple[str, ...]
    regexes: tuple[re.Pattern, ...] = dataclasses.field(repr=False, compare=False, default=())

    def match(self, path: str) -> str | None:
        for pat, rx in zip(self.patterns, self.regexes):
            if rx.fullmatch(path):
                return pat
        return None


@dataclasses.dataclass(frozen=True)
class Change:
    status: str          # A, M, D, R, C, T (git's letter, the score dropped)
    path: str            # the path at head (for D: the deleted path)
    old_path: str | None = None  # the path at base, for renames and copies


@dataclasses.dataclass(frozen=True)
class Match:
    path: str
    side: str            # "new", "old" (the source of a rename) or "deleted"
    status: str
    rule: str
    pattern: str | None
    action: str


@dataclasses.dataclass
class Plan:
    action: str
    base: str | None
    head: str
    config: str
    changes: list[Change]
    matches: list[Match]

    def module_files(self) -> list[str]:
        """Files that made the plan ``modules_only`` and still exist at head (to upload)."""
        return sorted({m.path for m in self.matches if m.action == "modules_only" and m.side == "new"})

    def to_dict(self) -> dict:
        deciding = [dataclasses.asdict(m) for m in self.matches if m.action == self.action]
        return {
            "action": self.action,
            "base": self.base,
            "head": self.head,
            "config": self.config,
            "reasons": deciding,
            "matches": [dataclasses.asdict(m) for m in self.matches],
            "changed_files": sorted({c.path for c in self.changes}
                                    | {c.old_path for c in self.changes if c.old_path}),
            "changes": [dataclasses.asdict(c) for c in self.changes],
            "module_files": self.module_files(),
        }


# ---------------------------------------------------------------- glob patterns

def glob_to_regex(pattern: str) -> re.Pattern:
    """Translate a repository-relative glob to a regex anchored at the repository root.

    ``*`` and ``?`` stay inside one path segment, ``**`` spans segments (``docs/**``,
    ``**/*.md``), ``[abc]`` is a character class. A pattern ending in ``/`` matches
    everything below that directory.
    """
    if pattern.endswith("/"):
        pattern += "**"
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append(r"(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(r".*")
            i += 2
        elif c == "*":
            out.append(r"[^/]*")
            i += 1
        elif c == "?":
            out.append(r"[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out))


# ---------------------------------------------------------------- config

def load_rules(path: str) -> tuple[list[Rule], str]:
    """Read the rules (in priority order) and the action for a path no rule matches."""
    if not os.path.isfile(path):
        raise CiPlanError(f"change-detection config {path} does not exist; expected a TOML file "
                          f"with [[rule]] tables (name, action, paths), or pass --config PATH")
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise CiPlanError(f"{path}: not valid TOML: {e}") from None
    unmatched = doc.get("unmatched", "full_rebuild")
    if unmatched not in ACTIONS:
        raise CiPlanError(f"{path}: unmatched = {unmatched!r}; expected one of {list(ACTIONS)}")
    raw = doc.get("rule")
    if not isinstance(raw, list) or not raw:
        raise CiPlanError(f"{path}: expected at least one [[rule]] table with name, action and paths; "
                          f"found {'none' if raw is None else type(raw).__name__}")
    rules, seen = [], set()
    for i, r in enumerate(raw, 1):
        where = f"{path}: [[rule]] #{i}"
        if not isinstance(r, dict):
            raise CiPlanError(f"{where}: expected a table, found {type(r).__name__}")
        extra = set(r) - {"name", "action", "paths", "description"}
        if extra:
            raise CiPlanError(f"{where}: unknown key(s) {sorted(extra)}; expected name, action, paths, description")
        name = r.get("name") or f"rule-{i}"
        where = f"{path}: [[rule]] #{i} ({name!r})"
        if name in seen:
            raise CiPlanError(f"{where}: duplicate rule name")
        seen.add(name)
        action = r.get("action")
        if action not in ACTIONS:
            raise CiPlanError(f"{where}: action = {action!r}; expected one of {list(ACTIONS)}")
        pats = r.get("paths")
        if not isinstance(pats, list) or not pats or not all(isinstance(p, str) and p for p in pats):
            raise CiPlanError(f"{where}: paths must be a non-empty list of glob strings, found {pats!r}")
        rules.append(Rule(name, action, tuple(pats), tuple(glob_to_regex(p) for p in pats)))
    return rules, unmatched


# ---------------------------------------------------------------- git

def _git(repo: str, *args: str) -> str:
    try:
        res = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CiPlanError("git is not installed (needed by tfpipe ci plan)") from None
    if res.returncode != 0:
        raise CiPlanError(f"git {' '.join(args)} failed in {repo}: {res.stderr.strip()}")
    return res.stdout


def _is_empty_base(base: str | None) -> bool:
    return base is None or base.strip() == "" or bool(_ZERO.match(base.strip()))


def _resolve(repo: str, sha: str, flag: str) -> str:
    res = subprocess.run(["git", "-C", repo, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}"],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise CiPlanError(f"{flag} {sha}: unknown commit in the git repository at {repo} "
                          f"(expected a commit SHA or ref present in this clone; a shallow CI checkout "
                          f"needs fetch-depth: 0)")
    return res.stdout.strip()


def changed_paths(repo: str, base: str | None, head: str) -> tuple[str | None, str, list[Change]]:
    """(resolved base or None, resolved head, changes) between two commits of ``repo``."""
    if not os.path.isdir(repo):
        raise CiPlanError(f"repository directory {repo} does not exist")
    inside = subprocess.run(["git", "-C", repo, "rev-parse", "--is-inside-work-tree"],
                            capture_output=True, text=True, check=False)
    if inside.returncode != 0:
        raise CiPlanError(f"{repo} is not inside a git repository: {inside.stderr.strip()}")
    head_sha = _resolve(repo, head, "--head")
    if _is_empty_base(base):
        out = _git(repo, "ls-tree", "-r", "-z", "--name-only", head_sha)
        return None, head_sha, [Change("A", p) for p in out.split("\0") if p]
    base_sha = _resolve(repo, base, "--base")
    out = _git(repo, "diff", "--no-ext-diff", "--name-status", "-z", "-M", base_sha, head_sha)
    fields = out.split("\0")
    changes, i = [], 0
    while i < len(fields) and fields[i]:
        status = fields[i][0]
        if status in "RC":
            changes.append(Change(status, fields[i + 2], old_path=fields[i + 1]))
            i += 3
        else:
            changes.append(Change(status, fields[i + 1]))
            i += 2
    return base_sha, head_sha, changes


# ---------------------------------------------------------------- classification

def classify(path: str, rules: list[Rule], unmatched: str) -> tuple[str, str | None, str]:
    """(rule name, pattern, action) of the first rule matching ``path``."""
    for rule in rules:
        pat = rule.match(path)
        if pat is not None:
            return rule.name, pat, rule.action
    return "(unmatched)", None, unmatched


def make_plan(repo: str, base: str | None, head: str, config: str | None = None) -> Plan:
    repo = os.path.abspath(repo)
    if config is None:
        top = _git(repo, "rev-parse", "--show-toplevel").strip() if os.path.isdir(repo) else repo
        config = os.path.join(top, DEFAULT_CONFIG)
    rules, unmatched = load_rules(config)
    base_sha, head_sha, changes = changed_paths(repo, base, head)
    matches = []
    for ch in changes:
        sides = [(ch.path, "deleted" if ch.status == "D" else "new")]
        if ch.old_path and ch.status == "R":
            sides.append((ch.old_path, "old"))
        for path, side in sides:
            rule, pat, action = classify(path, rules, unmatched)
            matches.append(Match(path, side, ch.status, rule, pat, action))
    action = max((m.action for m in matches), key=ACTIONS.index, default="nothing")
    return Plan(action, base_sha, head_sha, config, changes, matches)


def format_plan(plan: Plan) -> str:
    base = plan.base[:12] if plan.base else "(none: every file of head counts as added)"
    lines = [f"action: {plan.action}", f"base:   {base}", f"head:   {plan.head[:12]}",
             f"config: {plan.config}", f"changed files: {len(plan.to_dict()['changed_files'])}"]
    if plan.action == "nothing":
        lines.append("why: no changed path asks for a retrain" if plan.matches else "why: no changes")
    else:
        lines.append("why:")
    for m in plan.matches:
        mark = "*" if m.action == plan.action and plan.action != "nothing" else " "
        how = f"rule {m.rule!r} ({m.pattern})" if m.pattern else "no rule matched"
        lines.append(f" {mark} {m.status} {m.path} [{m.side}] -> {m.action} by {how}")
    if plan.module_files():
        lines.append("module files to upload: " + " ".join(plan.module_files()))
    return "\n".join(lines)


def module_overrides(ir: dict, files: list[str], module_root: str) -> tuple[dict[str, str], list[str]]:
    """Pipeline parameters that point the pipeline at uploaded module files.

    Every node parameter of the compiled ``ir`` whose value is a path ending in one of the
    repository-relative ``files`` becomes ``{node}__{param} -> module_root/<file>`` (the KFP
    pipeline-parameter naming of orchestrators/task.py), so a modules-only resubmit runs the new
    module code without rebuilding the image. Returns (overrides, files no parameter uses).
    """
    out, used = {}, set()
    for node in ir.get("nodes", []):
        for key, value in node.get("parameters", {}).items():
            if not isinstance(value, str):
                continue
            norm = value.replace(os.sep, "/")
            for rel in files:
                rel = rel.strip("/")
                if norm == rel or norm.endswith("/" + rel):
                    out[f"{node['id']}__{key}"] = module_root.rstrip("/") + "/" + rel
                    used.add(rel)
    return out, [f for f in files if f.strip("/") not in used]
