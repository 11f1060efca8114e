"""The lineage summary of a model version: which data, schema, transform, code commit,
parameters and evaluation it came from, flattened from its lineage tree (``records.lineage``)."""
from __future__ import annotations

from tfpipe.metadata import MetadataStore

from .results import load_evaluation

__all__ = ["summarize_lineage", "MODEL_ROLES"]

# a Model reached through these inputs is not the model itself
MODEL_ROLES = {"baseline_model": "baseline", "base_model": "warm-start base"}


def summarize_lineage(tree: dict, store: MetadataStore | None = None) -> dict:
    """Which data (span, fingerprint), schema, transform, code commit, parameters and
    evaluation a model version came from, flattened from its lineage tree. The evaluation
    is not upstream of a pushed model (its blessing is): with ``store`` it is found beside
    the blessing, as an output of the same Evaluator execution."""
    out = {"data": [], "derived_examples": [], "infra_blessing": [], "schema": [], "transform": [], "model": [],
           "evaluation": [], "blessing": [], "hyperparameters": [], "executions": []}
    seen_a, seen_e = set(), set()

    def walk(node, via: str = ""):
        a = node["artifact"]
        if a["id"] not in seen_a:
            seen_a.add(a["id"])
            t, props = a["type"], a["properties"]
            base = {"id": a["id"], "uri": a["uri"], "fingerprint": props.get("fingerprint")}
            if t == "Examples" and not props.get("input_fingerprint"):  # derived (e.g. transformed) examples
                out["derived_examples"].append({**base, "split_names": props.get("split_names")})
            elif t == "Examples":
                out["data"].append({**base, "span": props.get("span"), "version": props.get("version"),
                                    "input_fingerprint": props.get("input_fingerprint"),
                                    "row_counts": props.get("row_counts")})
            elif t == "Schema":
                out["schema"].append(base)
            elif t == "TransformGraph":
                out["transform"].append(base)
            elif t == "Model":  # by the input it was reached through: the Evaluator's baseline, a warm start
                out["model"].append({**base, "role": MODEL_ROLES.get(via, "candidate")})
            elif t == "ModelEvaluation":
                ev = load_evaluation(a["uri"])
                out["evaluation"].append({**base, "slices": ev["slices"], "thresholds": ev["thresholds"]})
            elif t == "ModelBlessing":
                out["blessing"].append({**base, "blessed": props.get("blessed"), "reasons": props.get("reasons")})
                pb = node.get("produced_by")
                if store is not None and pb:
                    for outs in store.io_of(pb["execution_id"])[1].values():
                        for x in outs:
                            if x.type_name == "ModelEvaluation" and x.id not in seen_a:
                                walk({"artifact": {"id": x.id, "type": x.type_name, "uri": x.uri,
                                                   "state": x.state, "properties": x.properties}})
            elif t == "InfraBlessing":
                out["infra_blessing"].append({**base, "blessed": props.get("blessed"), "reasons": props.get("reasons")})
            elif t == "HyperParameters":
                out["hyperparameters"].append(base)
        pb = node.get("produced_by")
        if pb and pb["execution_id"] not in seen_e:
            seen_e.add(pb["execution_id"])
            out["executions"].append({k: pb.get(k) for k in ("execution_id", "node_id", "component", "run_id",
                                                             "git_commit", "git_dirty", "code_version",
                                                             "data_fingerprint", "parameters")})
        for key, subs in node.get("inputs", {}).items():
            for s in subs:
                walk(s, key)

    walk(tree)
    commits = sorted({(e["git_commit"] or "-") + ("*" if e["git_dirty"] else "") for e in out["executions"]})
    out["code_commits"] = commits
    return out
