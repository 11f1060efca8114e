"""ExampleGen + StatisticsGen from a SQL table against the same rows as Parquet files, in the
same bench run: synthetic penguins at 100k and 1M rows (``TFPIPE_BENCH_SQL_ROWS``) loaded
into a MariaDB table (a server started here on loopback, as the tests start it; the table
without a version column, so every snapshot is the checksum the database computes over all
rows, the dearer case) and written as Parquet; and the same rows in a table with an
``id`` column read with ``version_column="id"`` (the snapshot a COUNT and MAX, no checksum;
the read has the id column too).

Each side is ``tfpipe run`` (the installed command) from a fresh process with a fresh root,
one process doing all the work (``--parallel 1``), so wall time and peak RSS are the run's;
the sides run in turn, ``TFPIPE_BENCH_SQL_REPEAT`` times (default 3) at each size, and the
figures are the medians (the machine's speed drifts between runs; a ratio is the median of
the ratios of runs next to each other). The ratios are SQL over Parquet at the largest size
(target <= 2x, for the checksum table) and the SQL side's peak RSS at the largest size over
the smallest (flat: the rows are streamed through a server-side cursor in batches, target
<= 1.5x)."""
from __future__ import annotations

import os
import shutil

from .common import OUT, env_sizes, fresh_workdir, scaled_penguins, tfpipe_cli, write_pipeline

PIPE = """
from tfpipe import Pipeline
from tfpipe.components import ExampleGen, StatisticsGen


def create_pipeline():
    gen = ExampleGen({source}, label_key="species")
    stats = StatisticsGen(examples=gen.outputs.examples)
    return Pipeline("bench_sql_{tag}", [gen, stats], root={root!r}, metadata={md!r},
                    beam_pipeline_args=["--direct_num_workers=1"])
"""

COLUMNS = ("species VARCHAR(20), island VARCHAR(20), bill_length_mm DOUBLE, bill_depth_mm DOUBLE, "
           "flipper_length_mm BIGINT, body_mass_g BIGINT, sex VARCHAR(10), year BIGINT")


def _pipeline(work: str, tag: str, source: str) -> str:
    return write_pipeline(work, tag, PIPE, source=source, tag=tag)


def _load(server, csv: str, table: str) -> None:
    """The CSV (pyarrow's: strings quoted, a missing value empty) into a new table."""
    names = [c.split()[0] for c in COLUMNS.split(", ")]
    sets = ", ".join(f"{n} = NULLIF(@{n}, '')" for n in names)
    server.sql(f"USE bench; DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ({COLUMNS}); "
               f"LOAD DATA INFILE '{csv}' INTO TABLE {table} FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' "
               f"IGNORE 1 LINES ({', '.join('@' + n for n in names)}) SET {sets}")


def _load_versioned(server, table: str) -> str:
    """The rows of ``table`` again in ``table``_v, with an ``id`` (1, 2, ...) first."""
    names = ", ".join(c.split()[0] for c in COLUMNS.split(", "))
    server.sql(f"USE bench; DROP TABLE IF EXISTS {table}_v; "
               f"CREATE TABLE {table}_v (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, {COLUMNS}); "
               f"INSERT INTO {table}_v ({names}) SELECT {names} FROM {table}")
    return f"{table}_v"


def _runs(work: str, sides: dict, env: dict, repeat: int) -> dict:
    """``{tag: [measurement, ...]}``: each side's pipeline run ``repeat`` times in turn (A B C
    A B C ...), each from a fresh root and metadata store."""
    runs: dict[str, list] = {tag: [] for tag in sides}
    for _ in range(repeat):
        for tag, source in sides.items():
            shutil.rmtree(os.path.join(work, f"root_{tag}"), ignore_errors=True)
            md = os.path.join(work, f"md_{tag}.sqlite")
            if os.path.exists(md):
                os.remove(md)
            runs[tag].append(tfpipe_cli("run", "-q", "--parallel", "1", _pipeline(work, tag, source), env=env))
    return runs


def _median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _wall_ratio(a: list, b: list) -> float:
    """The median of run i of ``a`` over run i of ``b``: runs next to each other in time."""
    return _median([x["process_wall_s"] / y["process_wall_s"] for x, y in zip(a, b)])


def _med(ms: list) -> dict:
    return {k: _median([m[k] for m in ms]) for k in ("process_wall_s", "peak_rss_mb")}


def _parquet(csv: str, out_dir: str) -> str:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "penguins.parquet")
    if not os.path.exists(path):
        pq.write_table(pacsv.read_csv(csv), path)
    return out_dir


def run(report):
    from tests.mysql_server import MySQLServer
    work = fresh_workdir("sql_source")
    sizes = env_sizes("TFPIPE_BENCH_SQL_ROWS", "100000,1000000")
    repeat = max(1, int(os.environ.get("TFPIPE_BENCH_SQL_REPEAT", "3")))
    server = MySQLServer(os.path.join(work, "mariadb"))
    server.install()
    server.start()
    try:
        url = server.create_database("bench")
        results = {}
        for rows in sizes:
            csv = scaled_penguins(rows, os.path.join(OUT, "data", f"penguins_{rows}", "penguins.csv"))
            table = f"penguins_{rows}"
            _load(server, csv, table)
            loaded = int(server.sql(f"SELECT COUNT(*) FROM bench.{table}").strip())
            if loaded != rows:
                raise RuntimeError(f"{table}: {loaded} rows loaded from {csv}, expected {rows}")
            versioned = _load_versioned(server, table)
            parquet = _parquet(csv, os.path.join(OUT, "data", f"penguins_{rows}_parquet"))
            sides = {
                f"sql_{rows}": f"source='sql', source_config={{'url': {url!r}, 'table': {table!r}, "
                               f"'batch_rows': 50000}}",
                f"sqlv_{rows}": f"source='sql', source_config={{'url': {url!r}, 'table': {versioned!r}, "
                                f"'version_column': 'id', 'batch_rows': 50000}}",
                f"parquet_{rows}": f"input_base={parquet!r}",
            }
            runs = _runs(work, sides, server.env(), repeat)
            results[rows] = runs[f"sql_{rows}"], runs[f"parquet_{rows}"], runs[f"sqlv_{rows}"]
            m_sql, m_pq, m_sqlv = (_med(r) for r in results[rows])
            note = f"median of {repeat}, each a fresh process"
            report(f"ExampleGen+StatisticsGen {rows:,} rows from MariaDB: wall", m_sql["process_wall_s"], "s", note)
            report(f"ExampleGen+StatisticsGen {rows:,} rows from MariaDB, version_column: wall",
                   m_sqlv["process_wall_s"], "s", note)
            report(f"ExampleGen+StatisticsGen {rows:,} rows from Parquet: wall", m_pq["process_wall_s"], "s", note)
            report(f"{rows:,} rows from MariaDB: peak RSS", m_sql["peak_rss_mb"], "MB")
            report(f"{rows:,} rows from MariaDB, version_column: peak RSS", m_sqlv["peak_rss_mb"], "MB")
            report(f"{rows:,} rows from Parquet: peak RSS", m_pq["peak_rss_mb"], "MB")
        big, small = max(sizes), min(sizes)
        r_sql, r_pq, r_sqlv = results[big]
        pairs = f"median of {repeat} runs next to each other"
        report(f"wall time ratio MariaDB / Parquet, {big:,} rows", _wall_ratio(r_sql, r_pq), "x",
               f"(target <= 2x; {pairs})")
        report(f"wall time ratio MariaDB version_column / Parquet, {big:,} rows", _wall_ratio(r_sqlv, r_pq), "x",
               f"({pairs})")
        if big > small:
            report(f"peak RSS ratio from MariaDB, {big:,} / {small:,} rows",
                   _med(r_sql)["peak_rss_mb"] / _med(results[small][0])["peak_rss_mb"], "x",
                   "(target <= 1.5x: flat)")
    finally:
        server.stop()
