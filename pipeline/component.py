"""Declaring a component once, from one typed Python signature.

    @component(name="StatisticsGen")
    def statistics_gen(examples: Input[Examples], statistics: Output[ExampleStatistics],
                       exclude_splits: list[str] = ()) -> None: ...

The decorator derives the interface (inputs, outputs, parameters with types and
defaults) from the signature; calling the result with keyword arguments makes a node
for a Pipeline, checking the wiring at once. The function body is the executor: it runs
with resolved input artifacts, output artifacts whose URIs point at a staging
directory, and parameter values. It never touches metadata.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import typing
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from .artifacts import Artifact
from .names import check_name

__all__ = ["component", "Input", "Output", "ModuleFile", "ComponentSpec", "Node", "Channel",
           "ComponentDefinitionError", "WiringError"]

A = TypeVar("A", bound=Artifact)


class Input(Generic[A]):
    """``Input[Examples]``: an input artifact; ``Input[Model] | None = None`` is optional."""


class Output(Generic[A]):
    """``Output[Schema]``: an output artifact the executor writes under ``artifact.uri``."""


class ModuleFile(str):
    """A parameter that names a user module file; its content (and the local modules it
    imports) is part of the cache key."""


class ComponentDefinitionError(TypeError):
    """The component's signature cannot be turned into an interface."""


class WiringError(TypeError):
    """A node was wired wrongly: unknown argument, wrong channel type, missing input..."""


_PARAM_TYPES = (int, float, str, bool, list, dict)


@dataclass(frozen=True)
class InputSpec:
    type: type[Artifact]
    optional: bool = False


@dataclass(frozen=True)
class OutputSpec:
    type: type[Artifact]


@dataclass(frozen=True)
class ParamSpec:
    type: type
    default: Any = inspect.Parameter.empty
    is_module_file: bool = False

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


def _check_value(ptype: type, value: Any) -> bool:
    if ptype is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ptype is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if ptype is list:
        return isinstance(value, (list, tuple))
    return isinstance(value, ptype)


def _param_type(annotation: Any) -> type | None:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _param_type(args[0])
        return None
    if origin is not None:
        annotation = origin
    if annotation is ModuleFile:
        return ModuleFile
    if annotation is tuple:
        return list
    return annotation if annotation in _PARAM_TYPES else None


class ComponentSpec:
    """The interface of a component, derived from its executor's signature."""

    def __init__(self, fn: Callable, name: str | None = None, driver: Callable | None = None,
                 version: str | None = None, resolver: Callable | None = None,
                 code_files: tuple[str, ...] = (), check: Callable | None = None,
                 converters: dict[str, Callable] | None = None, check_previous: Callable | None = None):
        self.fn = fn
        self.check = check  # check(parameters) when the pipeline is compiled, before any node runs
        self.check_previous = check_previous  # check_previous(parameters, previous ones) after the driver
        self.name = check_name("component name", fn.__name__ if name is None else name, ComponentDefinitionError)
        self.driver = driver
        self.resolver = resolver  # see pipeline/resolver.py: picks existing artifacts, no executor
        self.version = version
        self.code_files = tuple(code_files)
        self.inputs: dict[str, InputSpec] = {}
        self.outputs: dict[str, OutputSpec] = {}
        self.parameters: dict[str, ParamSpec] = {}
        hints = typing.get_type_hints(fn)
        for pname, p in inspect.signature(fn).parameters.items():
            if pname not in hints:
                raise ComponentDefinitionError(
                    f"component {self.name}: argument {pname!r} has no type annotation; expected "
                    f"Input[...], Output[...] or one of int, float, str, bool, list, dict")
            ann = hints[pname]
            optional = False
            origin = typing.get_origin(ann)
            if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
                args = [a for a in typing.get_args(ann) if a is not type(None)]
                if len(args) == 1 and typing.get_origin(args[0]) in (Input, Output):
                    ann, optional, origin = args[0], True, typing.get_origin(args[0])
            if origin in (Input, Output):
                (atype,) = typing.get_args(ann)
                if not (isinstance(atype, type) and issubclass(atype, Artifact)):
                    raise ComponentDefinitionError(
                        f"component {self.name}: {pname}: {origin.__name__}[...] needs an Artifact "
                        f"class, found {atype!r}")
                if origin is Input:
                    self.inputs[pname] = InputSpec(atype, optional or p.default is None)
                else:
                    self.outputs[pname] = OutputSpec(atype)
                continue
            ptype = _param_type(ann)
            if ptype is None:
                raise ComponentDefinitionError(
                    f"component {self.name}: parameter {pname!r} has type {ann!r}; expected one of "
                    f"int, float, str, bool, list, dict, ModuleFile")
            default = p.default
            if isinstance(default, tuple):
                default = list(default)
            self.parameters[pname] = ParamSpec(str if ptype is ModuleFile else ptype, default,
                                               ptype is ModuleFile)
        self.converters = dict(converters or {})
        unknown = sorted(set(self.converters) - set(self.parameters))
        if unknown:
            raise ComponentDefinitionError(f"component {self.name}: converters for {unknown}, which are not "
                                           f"parameters; parameters: {sorted(self.parameters)}")

    @property
    def executor_ref(self) -> str:
        """``module:attribute`` of this spec, importable where the node runs."""
        return f"{self.fn.__module__}:{self.attr_name}"

    @property
    def source_file(self) -> str | None:
        try:
            return inspect.getsourcefile(self.fn)
        except TypeError:
            return None

    attr_name: str = ""  # the module attribute @component bound this spec to

    def code_version(self) -> str:
        """A hash of the executor's source file and the local modules it imports (e.g. a
        component's private helpers), plus ``code_files`` (files next to it the executor runs
        without importing them, such as a worker script started as a subprocess), so changed
        component code misses the cache."""
        if self.version:
            return self.version
        if self._code_version is None:
            from .fingerprint import module_fingerprint
            path = self.source_file
            if path and os.path.isfile(path):
                here = os.path.dirname(path)
                parts = [module_fingerprint(p) for p in (path, *(os.path.join(here, f) for f in self.code_files))]
                self._code_version = (parts[0] if len(parts) == 1
                                      else hashlib.sha256("\0".join(parts).encode()).hexdigest())[:16]
            else:
                self._code_version = hashlib.sha256(self.fn.__code__.co_code).hexdigest()[:16]
        return self._code_version

    _code_version: str | None = None

    def __call__(self, *args, id: str | None = None, enable_cache: bool = True,
                 output_types: dict[str, type[Artifact]] | None = None, **kwargs) -> "Node":
        """``output_types`` (resolver components only) declares this node's outputs, e.g.
        ``{"model": Model}``: what a resolver returns depends on how it is used."""
        if args:
            raise WiringError(f"{self.name}() takes keyword arguments only; got {len(args)} positional")
        return Node(self, self.name if id is None else id, kwargs, enable_cache, output_types)

    def __repr__(self) -> str:
        return f"<component {self.name} inputs={list(self.inputs)} outputs={list(self.outputs)}>"


@dataclass(eq=False)
class Channel:
    """An output of a node, to be passed as an input to another."""
    producer: "Node"
    key: str
    type: type[Artifact]

    def __repr__(self):
        return f"Channel({self.producer.id}.{self.key}: {self.type.TYPE_NAME})"


class _Outputs(dict):
    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k) from None


class Node:
    """One use of a component in a pipeline, with its wiring checked at once."""

    def __init__(self, spec: ComponentSpec, id: str, kwargs: dict[str, Any], enable_cache: bool = True,
                 output_types: dict[str, type[Artifact]] | None = None):
        check_name(f"{spec.name}(): node id", id, WiringError)
        self.spec = spec
        self.id = id
        self.enable_cache = enable_cache
        self.inputs: dict[str, Channel] = {}
        self.parameters: dict[str, Any] = {}
        where = f"{spec.name}(id={id!r})"
        for k, v in kwargs.items():
            if k in spec.inputs:
                want = spec.inputs[k].type
                if v is None:
                    continue
                if not isinstance(v, Channel):
                    raise WiringError(f"{where}: input {k!r} expects a channel of {want.TYPE_NAME} "
                                      f"(another node's output), found {type(v).__name__} {v!r}")
                if not issubclass(v.type, want):
                    raise WiringError(f"{where}: input {k!r} expects {want.TYPE_NAME}, found "
                                      f"{v.type.TYPE_NAME} from {v.producer.id}.{v.key}")
                self.inputs[k] = v
            elif k in spec.parameters:
                ps = spec.parameters[k]
                if isinstance(v, Channel):
                    raise WiringError(f"{where}: parameter {k!r} expects a {ps.type.__name__} value, "
                                      f"found a channel {v!r}")
                if v is None and ps.default is None:
                    continue
                if k in spec.converters:
                    try:
                        v = spec.converters[k](v)
                    except (TypeError, ValueError) as e:
                        raise WiringError(f"{where}: parameter {k!r}: {e}") from None
                if not _check_value(ps.type, v):
                    raise WiringError(f"{where}: parameter {k!r} expects {ps.type.__name__}, found "
                                      f"{type(v).__name__} {v!r}")
                if ps.type is list:
                    v = list(v)
                if ps.type in (list, dict):
                    try:
                        json.dumps(v)
                    except TypeError as e:
                        raise WiringError(f"{where}: parameter {k!r} must be JSON data: {e}") from None
                self.parameters[k] = float(v) if ps.type is float else v
            elif k in spec.outputs:
                raise WiringError(f"{where}: {k!r} is an output; outputs are read from "
                                  f"node.outputs[{k!r}], not passed in")
            else:
                known = sorted([*spec.inputs, *spec.parameters])
                raise WiringError(f"{where}: unknown argument {k!r}; expected one of {known}")
        for k, s in spec.inputs.items():
            if k not in self.inputs and not s.optional:
                raise WiringError(f"{where}: missing required input {k!r} ({s.type.TYPE_NAME})")
        for k, s in spec.parameters.items():
            if k not in self.parameters and s.required:
                raise WiringError(f"{where}: missing required parameter {k!r} ({s.type.__name__})")
        types = {k: o.type for k, o in spec.outputs.items()}
        if output_types:
            if spec.resolver is None:
                raise WiringError(f"{where}: output_types is only for resolver components; "
                                  f"{spec.name} declares its outputs {sorted(types)} in its signature")
            for k, t in output_types.items():
                if not (isinstance(t, type) and issubclass(t, Artifact)):
                    raise WiringError(f"{where}: output_types[{k!r}] must be an Artifact class, found {t!r}")
                if k in types and not issubclass(t, types[k]):
                    raise WiringError(f"{where}: output {k!r} is declared {types[k].TYPE_NAME}; "
                                      f"output_types gives {t.TYPE_NAME}, not a subclass")
                types[k] = t
        self.outputs = _Outputs({k: Channel(self, k, t) for k, t in types.items()})

    @property
    def upstream(self) -> list["Node"]:
        seen, out = set(), []
        for ch in self.inputs.values():
            if ch.producer.id not in seen:
                seen.add(ch.producer.id)
                out.append(ch.producer)
        return out

    def __repr__(self):
        return f"<node {self.id}: {self.spec.name}>"


def component(fn: Callable | None = None, *, name: str | None = None, driver: Callable | None = None,
              version: str | None = None, resolver: Callable | None = None, code_files: tuple[str, ...] = (),
              check: Callable | None = None, converters: dict[str, Callable] | None = None,
              check_previous: Callable | None = None):
    """Turn a typed function into a component. Usable bare (``@component``) or with options.

    ``driver(parameters) -> dict`` runs before the cache decision (e.g. ExampleGen picking a
    span and fingerprinting its input); what it returns joins the cache key and is passed
    to the executor as ``parameters``.

    ``resolver(query, pipeline_name, params, inputs) -> {output_key: [artifacts]}`` makes a
    resolver component: the launcher calls it instead of the function body, to pick
    existing artifacts of earlier runs from ML Metadata (see ``pipeline/resolver.py``).

    ``code_files``: files (relative to the component's source file) that its executor runs
    without importing them, e.g. a worker module started with ``python -m``; they join the
    code version, as the modules it imports do.

    ``check(parameters)`` runs when the pipeline is compiled, before any node runs, with the
    node's parameters (defaults included): what can be known wrong from them alone (a
    module file that does not exist, does not parse, or lacks the function the component
    calls) fails there, not after the upstream nodes' work. It raises with a message.

    ``converters={"param": fn}``: ``fn(value)`` runs when a node is defined, before the
    value's type is checked, and returns the value to keep, e.g. a protobuf message turned
    into its JSON dict (the Evaluator's ``eval_config`` takes a ``tfma.EvalConfig`` message
    this way; the IR stays JSON). A value it does not handle it returns unchanged; a
    TypeError or ValueError it raises becomes a WiringError naming node and parameter.

    ``check_previous(parameters, previous)`` runs after the driver with the parameters
    (the driver's output included) of this node's last COMPLETE execution in the pipeline,
    when there is one: what may not change from one run to the next (ExampleGen: a column's
    type) fails the execution there, before anything is written. It raises with a message.
    """
    def wrap(f: Callable) -> ComponentSpec:
        spec = ComponentSpec(f, name=name, driver=driver, version=version, resolver=resolver,
                             code_files=code_files, check=check, converters=converters,
                             check_previous=check_previous)
        spec.attr_name = f.__name__
        return spec
    return wrap(fn) if fn is not None else wrap
