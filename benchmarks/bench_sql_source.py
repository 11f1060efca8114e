"""ExampleGen + StatisticsGen from a SQL table against the same rows as Parquet files, in the
same bench run: synthetic penguins at 100k and 1M rows (``TFPIPE_BENCH_SQL_ROWS``) loaded
into a MariaDB table (a server started here on loopback, as the tests start it; the table
without a version column, so every snapshot is the checksum the database computes over all
rows, the dearer case) and written as Parquet.

Each side is ``tfpipe run`` (the installed command) from a fresh process, one process doing
all the work (``--parallel 1``), so wall time and peak RSS are the run's; the ratios are
SQL over Parquet at the largest size (target <= 2x) and the SQL side's peak RSS at the
largest size over the smallest (flat: the rows are streamed through a server-side cursor
in batches, target <= 1.5x)."""
from __future__ import annotations

import os
import shutil

from .common import OUT, scaled_penguins, tfpipe_cli

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
    path = os.path.join(work, f"pipe_{tag}.py")
    with open(path, "w") as f:
        f.write(PIPE.format(source=source, tag=tag, root=os.path.join(work, f"root_{tag}"),
                            md=os.path.join(work, f"md_{tag}.sqlite")))
    return path


def _load(server, csv: str, table: str) -> None:
    """The CSV (pyarrow's: strings quoted, a missing value empty) into a new table."""
    names = [c.split()[0] for c in COLUMNS.split(", ")]
    sets = ", ".join(f"{n} = NULLIF(@{n}, '')" for n in names)
    server.sql(f"USE bench; DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ({COLUMNS}); "
               f"LOAD DATA INFILE '{csv}' INTO TABLE {table} FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' "
               f"IGNORE 1 LINES ({', '.join('@' + n for n in names)}) SET {sets}")


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
    work = os.path.join(OUT, "sql_source")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    sizes = sorted(int(s) for s in os.environ.get("TFPIPE_BENCH_SQL_ROWS", "100000,1000000").split(","))
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
            parquet = _parquet(csv, os.path.join(OUT, "data", f"penguins_{rows}_parquet"))
            sql_src = f"source='sql', source_config={{'url': {url!r}, 'table': {table!r}, 'batch_rows': 50000}}"
            m_sql = tfpipe_cli("run", "-q", "--parallel", "1", _pipeline(work, f"sql_{rows}", sql_src),
                               env=server.env())
            m_pq = tfpipe_cli("run", "-q", "--parallel", "1",
                              _pipeline(work, f"parquet_{rows}", f"input_base={parquet!r}"))
            results[rows] = (m_sql, m_pq)
            report(f"ExampleGen+StatisticsGen {rows:,} rows from MariaDB: wall", m_sql["process_wall_s"], "s",
                   "cold: a fresh process")
            report(f"ExampleGen+StatisticsGen {rows:,} rows from Parquet: wall", m_pq["process_wall_s"], "s")
            report(f"{rows:,} rows from MariaDB: peak RSS", m_sql["peak_rss_mb"], "MB")
            report(f"{rows:,} rows from Parquet: peak RSS", m_pq["peak_rss_mb"], "MB")
        big, small = max(sizes), min(sizes)
        m_sql, m_pq = results[big]
        report(f"wall time ratio MariaDB / Parquet, {big:,} rows", m_sql["process_wall_s"] / m_pq["process_wall_s"],
               "x", "(target <= 2x)")
        if big > small:
            report(f"peak RSS ratio from MariaDB, {big:,} / {small:,} rows",
                   m_sql["peak_rss_mb"] / results[small][0]["peak_rss_mb"], "x", "(target <= 1.5x: flat)")
    finally:
        server.stop()
