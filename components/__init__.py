"""Standard components. Each is declared once, as a typed function, with ``@component``."""
from .bulk_inferrer import BulkInferrer
from .evaluator import Evaluator
from .example_gen import ExampleGen
from .example_validator import ExampleValidator
from .infra_validator import InfraValidator
from .pusher import Pusher
from .resolver import Resolver
from .schema_gen import ImportSchemaGen, SchemaGen
from .statistics_gen import StatisticsGen
from .trainer import Trainer
from .transform import Transform
from .tuner import Tuner

__all__ = ["ExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen", "ExampleValidator",
           "Evaluator", "Resolver", "Pusher", "InfraValidator", "BulkInferrer", "Transform", "Trainer", "Tuner"]
