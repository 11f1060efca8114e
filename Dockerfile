# The pipeline image: what a Kubeflow / Vertex AI task or an Airflow KubernetesPodOperator
# task runs (`python -m tfpipe.orchestrators.task ...` -> the launcher). Same pinned environment
# as `make install`: Python 3.11 and constraints.txt.
#
#   docker build -t tfpipe:0.1.0 .
#   TFPIPE_IMAGE=REGISTRY/tfpipe:0.1.0 tfpipe compile PIPELINE.py --target kubeflow -o pipeline.yaml
FROM python:3.11.7-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=3

WORKDIR /opt/tfpipe

# Dependencies first (a layer that changes only with the lock file). The editable install
# maps the repository's folders into the one `tfpipe` namespace (pyproject.toml's
# package-dir); it needs each package's folder, so their __init__.py files come along.
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline/__init__.py pipeline/__init__.py
COPY pipeline/sources/__init__.py pipeline/sources/__init__.py
COPY components/__init__.py components/__init__.py
COPY orchestrators/__init__.py orchestrators/__init__.py
COPY orchestrators/local/__init__.py orchestrators/local/__init__.py
COPY orchestrators/beam/__init__.py orchestrators/beam/__init__.py
COPY orchestrators/airflow/__init__.py orchestrators/airflow/__init__.py
COPY orchestrators/kubeflow/__init__.py orchestrators/kubeflow/__init__.py
COPY serving/__init__.py serving/__init__.py
COPY tracking/__init__.py tracking/__init__.py
COPY cli/__init__.py cli/__init__.py
COPY v1/__init__.py v1/__init__.py
COPY v1/dsl/__init__.py v1/dsl/__init__.py
COPY v1/dsl/io/__init__.py v1/dsl/io/__init__.py
RUN python -m pip install -q --upgrade "pip>=24" \
 && python -m pip install -q -c constraints.txt -e . \
 && python -m pip check

# The code: the core, the model server, the components, the orchestrator adapters, tracking, the CLI,
# TFX's module-file names (tfpipe.v1) and the examples.
COPY pipeline/ pipeline/
COPY components/ components/
COPY orchestrators/ orchestrators/
COPY serving/ serving/
COPY tracking/ tracking/
COPY cli/ cli/
COPY v1/ v1/
COPY examples/ examples/

ENV TFPIPE_HOME=/var/lib/tfpipe
ENTRYPOINT []
CMD ["tfpipe", "--help"]
