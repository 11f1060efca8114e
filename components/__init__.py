"""Standard components. Each is declared once, as a typed function, with ``@component``."""
from .example_gen import ExampleGen
from .example_validator import ExampleValidator
from .schema_gen import ImportSchemaGen, SchemaGen
from .statistics_gen import StatisticsGen

__all__ = ["ExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen", "ExampleValidator"]
