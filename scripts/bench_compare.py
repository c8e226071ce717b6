#!/usr/bin/env python3
"""Driver of scripts/bench-compare: the same durable ingest and hourly aggregation on our stack
(meter-bench), SQLite (WAL, synchronous=FULL) and PostgreSQL (synchronous_commit=on), one table.

Run through scripts/bench-compare, which installs the engines and starts a throwaway PostgreSQL
cluster; this file only measures and prints. Standard library plus psycopg2 (Debian's
python3-psycopg2)."""

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import sqlite3
import subprocess
import sys
import time

import psycopg2

# The reference's UsageReported fields, as meter-bench's sample event carries them.
RESOURCE = "fdc778a6-1281-40e4-cade-{:012d}"
TIMESTAMP = "2022-09-19T13:26:22Z"
PROPERTIES = '{"campaign":"spring"}'
# meter-bench's catch-up workload: 1,000 subscriptions, three meters, no properties.
CATCH_UP_METERS = ("email", "cpu", "egress")
CATCH_UP_TIMESTAMP = "2024-01-31T00:00:00Z"
CATCH_UP_BATCH = 2000

SQLITE_SCHEMA = """
CREATE TABLE usage_events(
  sequence INTEGER PRIMARY KEY,
  idempotency_id TEXT NOT NULL UNIQUE,
  enqueued_time TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  resource_id TEXT NOT NULL,
  meter_name TEXT NOT NULL,
  quantity NUMERIC NOT NULL,
  timestamp TEXT NOT NULL,
  properties TEXT CHECK (properties IS NULL OR json_valid(properties))
)"""
SQLITE_INSERT = (
    "INSERT INTO usage_events(idempotency_id, resource_id, meter_name, quantity, timestamp, properties) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(idempotency_id) DO NOTHING"
)
SQLITE_HOURLY = (
    "SELECT resource_id, meter_name, strftime('%Y-%m-%dT%H:00:00Z', enqueued_time) AS hour, "
    "sum(quantity), count(*) FROM usage_events GROUP BY resource_id, meter_name, hour"
)

# No index on sequence: the heap's insertion order stands in for it, as the log's order does for ours.
POSTGRES_SCHEMA = """
CREATE TABLE usage_events(
  sequence bigint GENERATED ALWAYS AS IDENTITY,
  idempotency_id text NOT NULL UNIQUE,
  enqueued_time timestamptz NOT NULL DEFAULT now(),
  resource_id text NOT NULL,
  meter_name text NOT NULL,
  quantity numeric NOT NULL,
  "timestamp" timestamptz NOT NULL,
  properties json
)"""
POSTGRES_INSERT = (
    'INSERT INTO usage_events(idempotency_id, resource_id, meter_name, quantity, "timestamp", properties) '
    "VALUES {} ON CONFLICT (idempotency_id) DO NOTHING"
)
POSTGRES_HOURLY = (
    "SELECT resource_id, meter_name, date_trunc('hour', enqueued_time) AS hour, sum(quantity), count(*) "
    "FROM usage_events GROUP BY resource_id, meter_name, hour"
)


class Failure(Exception):
    """A side did not do the work it was asked (wrong count, error): the run fails."""


def sample_row(run, client, index):
    return (f"{run}-c{client}-e{index}", RESOURCE.format(100_000_000_000 + index % 10_000), "cpu", 1.5, TIMESTAMP, PROPERTIES)


def catch_up_row(index):
    return (f"u-{index}", f"bench-{index % 1000}", CATCH_UP_METERS[index % 3], 1.5, CATCH_UP_TIMESTAMP, None)


def percentile(sorted_values, fraction):
    """As meter-bench computes it, so both columns mean the same."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def result(events, elapsed, latencies, **extra):
    ordered = sorted(latencies)
    figures = {"events": events, "elapsed": elapsed, "eventsPerSecond": events / elapsed,
               "p50": percentile(ordered, 0.5), "p99": percentile(ordered, 0.99), "requests": len(latencies)}
    figures.update(extra)
    return figures


# MARK: engines


class SQLite:
    name = "SQLite"

    def __init__(self, directory):
        self.directory = directory

    def connect(self, path):
        # timeout is the busy timeout: concurrent writers wait for the write lock instead of failing.
        connection = sqlite3.connect(path, timeout=60, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
        if mode != "wal" or synchronous != 2:
            raise Failure(f"SQLite settings not applied: journal_mode={mode}, synchronous={synchronous}")
        return connection

    def fresh(self, label):
        path = os.path.join(self.directory, f"{label}.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        connection = self.connect(path)
        connection.execute(SQLITE_SCHEMA)
        connection.close()
        return path

    def settings(self):
        return f"SQLite {sqlite3.sqlite_version} (Python sqlite3): PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; busy timeout 60 s; other settings default"

    def batches(self, path, rows_of_batch, count):
        """Runs `count` batches, each one transaction; yields nothing, returns per-batch seconds and inserted rows."""
        connection = self.connect(path)
        latencies = []
        inserted = 0
        for number in range(count):
            rows = rows_of_batch(number)
            begin = time.monotonic()
            connection.execute("BEGIN")
            cursor = connection.executemany(SQLITE_INSERT, rows)
            connection.execute("COMMIT")
            latencies.append(time.monotonic() - begin)
            if cursor.rowcount != len(rows):
                raise Failure(f"SQLite inserted {cursor.rowcount} of {len(rows)} rows")
            inserted += len(rows)
        connection.close()
        return latencies, inserted

    def single_client(self, path, rows):
        connection = self.connect(path)
        statements = [(SQLITE_INSERT, row) for row in rows]

        def run():
            latencies = []
            for statement, parameters in statements:
                begin = time.monotonic()
                cursor = connection.execute(statement, parameters)  # autocommit: one durable transaction
                latencies.append(time.monotonic() - begin)
                if cursor.rowcount != 1:
                    raise Failure("SQLite did not insert a row")
            return latencies

        return run

    def hourly(self, path):
        connection = self.connect(path)
        begin = time.monotonic()
        groups = connection.execute(SQLITE_HOURLY).fetchall()
        elapsed = time.monotonic() - begin
        connection.close()
        return elapsed, groups


class PostgreSQL:
    name = "PostgreSQL"

    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.databases = 0

    def connect(self, database="postgres"):
        connection = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname=database)
        return connection

    def fresh(self, label):
        admin = self.connect()
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {label}")
            cursor.execute(f"CREATE DATABASE {label}")
        admin.close()
        connection = self.connect(label)
        with connection.cursor() as cursor:
            cursor.execute(POSTGRES_SCHEMA)
        connection.commit()
        connection.close()
        return label

    def settings(self):
        connection = self.connect()
        with connection.cursor() as cursor:
            values = {}
            for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes",
                         "shared_buffers", "max_wal_size", "max_parallel_workers_per_gather"):
                cursor.execute(f"SHOW {name}")
                values[name] = cursor.fetchone()[0]
        connection.close()
        if values["fsync"] != "on" or values["synchronous_commit"] != "on":
            raise Failure(f"PostgreSQL is not durable: {values}")
        version = values.pop("server_version")
        return (f"PostgreSQL {version} (psycopg2 {psycopg2.__version__.split()[0]}, Unix socket): "
                + ", ".join(f"{name}={value}" for name, value in values.items()) + "; other settings default")

    @staticmethod
    def statement(cursor, rows):
        values = b",".join(cursor.mogrify("(%s, %s, %s, %s, %s, %s)", row) for row in rows)
        return POSTGRES_INSERT.encode().replace(b"{}", values)

    def batches(self, database, rows_of_batch, count):
        connection = self.connect(database)
        cursor = connection.cursor()
        latencies = []
        inserted = 0
        for number in range(count):
            rows = rows_of_batch(number)
            statement = self.statement(cursor, rows)
            begin = time.monotonic()
            cursor.execute(statement)
            connection.commit()
            latencies.append(time.monotonic() - begin)
            if cursor.rowcount != len(rows):
                raise Failure(f"PostgreSQL inserted {cursor.rowcount} of {len(rows)} rows")
            inserted += len(rows)
        connection.close()
        return latencies, inserted

    def single_client(self, database, rows):
        connection = self.connect(database)
        cursor = connection.cursor()
        statements = [self.statement(cursor, [row]) for row in rows]

        def run():
            latencies = []
            for statement in statements:
                begin = time.monotonic()
                cursor.execute(statement)
                connection.commit()
                latencies.append(time.monotonic() - begin)
                if cursor.rowcount != 1:
                    raise Failure("PostgreSQL did not insert a row")
            return latencies

        return run

    def hourly(self, database):
        connection = self.connect(database)
        cursor = connection.cursor()
        begin = time.monotonic()
        cursor.execute(POSTGRES_HOURLY)
        groups = cursor.fetchall()
        elapsed = time.monotonic() - begin
        connection.close()
        return elapsed, groups


# MARK: workloads on SQL


def batched_ingest(engine, events, batch):
    target = engine.fresh("batched")
    count = (events + batch - 1) // batch

    def rows_of_batch(number):
        first = number * batch
        return [sample_row("batch", 0, index) for index in range(first, min(events, first + batch))]

    latencies, inserted = engine.batches(target, rows_of_batch, count)
    if inserted != events:
        raise Failure(f"{engine.name} inserted {inserted} of {events} events")
    # Time spent inside requests only: building each batch's rows in Python is left out (as
    # meter-bench leaves out building each request: see request_rate).
    return result(inserted, sum(latencies), latencies)


def _single_worker(engine, target, client, quota, barrier, queue):
    try:
        run = engine.single_client(target, [sample_row("single", client, index) for index in range(quota)])
        barrier.wait()
        start = time.monotonic()
        latencies = run()
        queue.put((start, time.monotonic(), latencies, None))
    except Exception as error:  # reported to the parent, which fails the run
        barrier.abort()
        queue.put((0, 0, [], f"client {client}: {error!r}"))


def single_ingest(engine, events, clients):
    target = engine.fresh("single")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(clients)
    queue = context.Queue()
    workers = []
    for client in range(clients):
        quota = events // clients + (1 if client < events % clients else 0)
        worker = context.Process(target=_single_worker, args=(engine, target, client, quota, barrier, queue))
        worker.start()
        workers.append(worker)
    try:
        outcomes = [queue.get(timeout=600) for _ in workers]
    except Exception:  # queue.Empty: a client died without a word
        for worker in workers:
            worker.kill()
        raise Failure(f"{engine.name}: a client process did not report within 600 s")
    for worker in workers:
        worker.join()
    failures = [failure for *_, failure in outcomes if failure]
    if failures:
        raise Failure(f"{engine.name}: {failures[0]}")
    latencies = [latency for _, _, values, _ in outcomes for latency in values]
    if len(latencies) != events:
        raise Failure(f"{engine.name} acknowledged {len(latencies)} of {events} events")
    elapsed = max(end for _, end, _, _ in outcomes) - min(start for start, _, _, _ in outcomes)
    return result(events, elapsed, latencies)


def hourly_aggregation(engine, events):
    target = engine.fresh("hourly")
    count = (events + CATCH_UP_BATCH - 1) // CATCH_UP_BATCH

    def rows_of_batch(number):
        first = number * CATCH_UP_BATCH
        return [catch_up_row(index) for index in range(first, min(events, first + CATCH_UP_BATCH))]

    begin = time.monotonic()
    engine.batches(target, rows_of_batch, count)
    load = time.monotonic() - begin
    elapsed, groups = engine.hourly(target)
    counted = sum(int(group[4]) for group in groups)
    total = sum(float(group[3]) for group in groups)
    if counted != events or abs(total - 1.5 * events) > 1e-6 * events:
        raise Failure(f"{engine.name} aggregated {counted} events, sum {total}; expected {events}, {1.5 * events}")
    return result(events, elapsed, [elapsed], groups=len(groups), load=load)


# MARK: our side


def meter_bench(binary, directory, label, arguments, log):
    """Runs meter-bench on a fresh home under `directory` and returns its JSON figures."""
    output = os.path.join(directory, f"ours-{label}.json")
    command = [binary, "--home", os.path.join(directory, f"ours-{label}")] + arguments + ["--json", output]
    with open(log, "a") as table:
        subprocess.run(command, stdout=table, check=True)
    with open(output) as file:
        figures = json.load(file)
    return figures, " ".join(["meter-bench"] + arguments)


def ours(figures, name, request_rate=False):
    """meter-bench's figures for case `name`. With `request_rate`, events per second of time spent
    in requests (send to durable ack), the measure the SQL side's batched figure uses."""
    for case in figures["cases"]:
        if case["name"] == name:
            if request_rate:
                case = dict(case, elapsed=case["requestSeconds"], eventsPerSecond=case["events"] / case["requestSeconds"])
            return case
    raise Failure(f"meter-bench printed no {name} figure")


# MARK: report


def number(value):
    return f"{value:,.0f}"


def milliseconds(value):
    return f"{value * 1000:.3f} ms"


def ratio(a, b):
    return f"{a / b:.2f}×" if b > 0 else "n/a"


def print_table(lines):
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    for index, line in enumerate(lines):
        print("  ".join(cell.ljust(widths[column]) for column, cell in enumerate(line)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} cores ({model}), {memory} GiB RAM, Linux {platform.release()}"


def filesystem(directory):
    try:
        found = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", directory], capture_output=True, text=True)
        return " ".join(found.stdout.split()) or "unknown"
    except OSError:
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bench", required=True, help="path of meter-bench")
    parser.add_argument("--dir", required=True, help="work directory (all three sides store their data here)")
    parser.add_argument("--pg-host", required=True, help="PostgreSQL's Unix socket directory")
    parser.add_argument("--pg-port", type=int, required=True)
    parser.add_argument("--batch-events", type=int, required=True)
    parser.add_argument("--single-events", type=int, required=True)
    parser.add_argument("--aggregate-events", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--command", required=True, help="the command line to print")
    options = parser.parse_args()

    sqlite_dir = os.path.join(options.dir, "sqlite")
    os.makedirs(sqlite_dir, exist_ok=True)
    engines = [SQLite(sqlite_dir), PostgreSQL(options.pg_host, options.pg_port)]
    settings = [engine.settings() for engine in engines]
    log = os.path.join(options.dir, "meter-bench.txt")
    partitions = ["--partitions", str(options.partitions)]
    if options.batch != 1000 or options.clients != 16:
        raise Failure("meter-bench's cases are fixed at 1,000 events per request and 16 clients")

    def progress(text):
        print(f"bench-compare: {text}", file=sys.stderr, flush=True)

    runs = []  # (workload, ours, [sql...], our command)
    started = datetime.datetime.now(datetime.timezone.utc)

    progress(f"batched ingest, {options.batch_events:,} events, ours")
    figures, command = meter_bench(options.bench, options.dir, "batched",
                                   ["--only", "batch-1000", "--events", str(options.batch_events)] + partitions, log)
    sql = []
    for engine in engines:
        progress(f"batched ingest, {options.batch_events:,} events, {engine.name}")
        sql.append(batched_ingest(engine, options.batch_events, options.batch))
    runs.append(("batched", ours(figures, "batch-1000", request_rate=True), sql, command))

    progress(f"single-event ingest from {options.clients} clients, {options.single_events:,} events, ours")
    figures, command = meter_bench(options.bench, options.dir, "single",
                                   ["--only", "single-16", "--events", str(options.single_events)] + partitions, log)
    sql = []
    for engine in engines:
        progress(f"single-event ingest from {options.clients} clients, {options.single_events:,} events, {engine.name}")
        sql.append(single_ingest(engine, options.single_events, options.clients))
    runs.append(("single", ours(figures, "single-16"), sql, command))

    progress(f"hourly aggregation of {options.aggregate_events:,} events, ours")
    figures, command = meter_bench(options.bench, options.dir, "hourly",
                                   ["--only", "catch-up", "--catch-up-events", str(options.aggregate_events)] + partitions, log)
    sql = []
    for engine in engines:
        progress(f"hourly aggregation of {options.aggregate_events:,} events, {engine.name} (loading, then GROUP BY)")
        sql.append(hourly_aggregation(engine, options.aggregate_events))
    runs.append(("hourly", ours(figures, "catch-up"), sql, command))

    titles = {
        "batched": f"durable ingest, {options.batch:,} events per request, 1 client",
        "single": f"durable ingest, 1 event per request, {options.clients} clients",
        "hourly": "hourly aggregation (sum per resource, meter, hour)",
    }
    lines = [["workload", "ours", "SQLite", "PostgreSQL", "ours/SQLite", "ours/PostgreSQL"]]
    for key, mine, (lite, postgres), _ in runs:
        lines.append([f"{titles[key]}: events/s", number(mine["eventsPerSecond"]), number(lite["eventsPerSecond"]),
                      number(postgres["eventsPerSecond"]), ratio(mine["eventsPerSecond"], lite["eventsPerSecond"]),
                      ratio(mine["eventsPerSecond"], postgres["eventsPerSecond"])])
        if key == "hourly":
            lines.append(["  time", milliseconds(mine["elapsed"]), milliseconds(lite["elapsed"]),
                          milliseconds(postgres["elapsed"]), "", ""])
        else:
            for quantile in ("p50", "p99"):
                lines.append([f"  {quantile} ack", milliseconds(mine[quantile]), milliseconds(lite[quantile]),
                              milliseconds(postgres[quantile]), "", ""])
    for _, mine, sql, _ in runs:
        for figure in [mine] + sql:
            if not figure["eventsPerSecond"] > 0:
                raise Failure("a side printed no figure")

    print("bench-compare — DESIGN.md §7: our durable ingest and hourly aggregation beside SQLite and PostgreSQL")
    print(f"command: {options.command}")
    print(f"run: {started:%Y-%m-%d %H:%M} UTC; machine: {machine()}; data of all three on {filesystem(options.dir)}")
    print(f"sizes: batched {options.batch_events:,} events; single-event {options.single_events:,} events; "
          f"aggregation {options.aggregate_events:,} events (1,000 resources × 3 meters)")
    print(f"ours: meter-ingest, {options.partitions} partitions, manual clock; driven by "
          + ", ".join(command for *_, command in runs))
    print("method: an event is acknowledged only once durable: ours after fdatasync of the log; SQLite and PostgreSQL")
    print("        at COMMIT (WAL synced). Each event has a unique idempotency id (ours: the idempotency index; SQL: a UNIQUE")
    print("        index, INSERT ... ON CONFLICT DO NOTHING) and gets its sequence number and enqueued time from the store.")
    print("        batched: events / time inside requests (send to durable ack; building requests is left out on every side);")
    print("        ours 1,000 events per append over the Unix socket, SQLite executemany of 1,000 rows in process, PostgreSQL")
    print("        one 1,000-row INSERT over its Unix socket; one transaction per batch.")
    print(f"        single: {options.clients} clients (ours threads, SQL processes), one event per request or transaction;")
    print("        events / wall time from the first start to the last ack.")
    print("        hourly: ours a fresh meter-aggregator from start to caught up (reads the log from ingest, decodes the JSON,")
    print("        applies the billing rules); SQL one GROUP BY query on the table just loaded. Clients share the machine's cores.")
    for line in settings:
        print(f"settings: {line}")
    print()
    print_table(lines)
    print()
    print("durations (s), ours / SQLite / PostgreSQL: " + "; ".join(
        f"{key} {mine['elapsed']:.2f} / {lite['elapsed']:.2f} / {postgres['elapsed']:.2f}"
        for key, mine, (lite, postgres), _ in runs))
    hourly = runs[2]
    print(f"hourly: ours folds {hourly[1]['events']:,} log records (usage + purchases + ticks) from process start to caught up; "
          f"SQL groups: SQLite {hourly[2][0]['groups']:,}, PostgreSQL {hourly[2][1]['groups']:,}; "
          f"SQL load before the query (untimed above, {CATCH_UP_BATCH:,}-row transactions): "
          f"SQLite {hourly[2][0]['load']:.1f} s, PostgreSQL {hourly[2][1]['load']:.1f} s")
    print("all three sides produced a figure for every workload")


if __name__ == "__main__":
    try:
        main()
    except (Failure, subprocess.CalledProcessError, psycopg2.Error, sqlite3.Error) as error:
        print(f"bench-compare: {error}", file=sys.stderr)
        sys.exit(1)
