"""tfpipe core: artifacts, component declaration, Pipeline graph, IR compiler, launcher,
ML Metadata, cache and CLI. Imports neither ``components`` nor ``orchestrators``."""
from .artifacts import (
                        Artifact,
                        Boolean,
                        ExampleAnomalies,
                        Examples,
                        ExampleStatistics,
                        Float,
                        HyperParameters,
                        InferenceResult,
                        InfraBlessing,
                        Integer,
                        JsonValue,
                        Model,
                        ModelBlessing,
                        ModelEvaluation,
                        ModelRun,
                        PushedModel,
                        Schema,
                        String,
                        TransformGraph,
                        ValueArtifact,
)
from .compiler import IR_VERSION, compile_pipeline
from .component import Input, ModuleFile, Output, WiringError, component
from .graph import Pipeline, PipelineDefinitionError
from .runtime import current

__all__ = [
    "Artifact", "ValueArtifact", "Examples", "ExampleStatistics", "Schema", "ExampleAnomalies",
    "TransformGraph", "Model", "ModelRun", "HyperParameters", "ModelEvaluation", "ModelBlessing",
    "InfraBlessing", "PushedModel", "InferenceResult", "String", "Integer", "Float", "Boolean",
    "JsonValue", "component", "Input", "Output", "ModuleFile", "WiringError", "Pipeline",
    "PipelineDefinitionError", "compile_pipeline", "IR_VERSION", "current",
]
