"""Standard components. Each is declared once, as a typed function, with ``@component``."""
from .example_gen import ExampleGen
from .example_validator import ExampleValidator
from .schema_gen import ImportSchemaGen, SchemaGen
from .statistics_gen import StatisticsGen
from .evaluator import Evaluator
from .resolver import Resolver
from .pusher import Pusher
from .infra_validator import InfraValidator
from .bulk_inferrer import BulkInferrer
from .transform import Transform
from .trainer import Trainer
from .tuner import Tuner

__all__ = ["ExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen", "ExampleValidator",
           "Evaluator", "Resolver", "Pusher", "InfraValidator", "BulkInferrer", "Transform", "Trainer", "Tuner"]
