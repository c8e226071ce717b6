/* postgres-ingest: durable ingest into PostgreSQL, the SQL side of the comparison's ingest workloads.
 *
 *   postgres-ingest --server CONNINFO --database NAME --run NAME --events N --batch B --clients C [--table keyed|plain]
 *
 * --table keyed (the default) stores what our log stores for an event, the idempotency id under a
 * UNIQUE index included; --table plain the reference clients' four columns without an index.
 * Measures: C client processes, each with its own connection (libpq, Unix socket) to a new
 * database NAME, insert N events in all (meter-bench's events for case --run), B per request:
 * one prepared multi-row INSERT, its own transaction, committed durably (fsync=on,
 * synchronous_commit=on: the WAL is flushed before the server answers) before the client sends
 * the next. Concurrent commits share WAL flushes (PostgreSQL's group commit). Each latency is
 * one request, from sending it (the rows already built) to the server's answer. Prints a
 * "settings" line and a "figures" line (clients.h). */
#include <stdio.h>

#include "clients.h"
#include "options.h"
#include "postgres_store.h"

/* The table of this run (--table): every client process opens the same. */
static enum postgres_table table = POSTGRES_TABLE_KEYED;

static void *open_store(const char *conninfo) { return postgres_store_open(conninfo, table); }

static int store_events(void *store, const struct event *events, int count) {
    return postgres_store_insert(store, events, count);
}

static void close_store(void *store) { postgres_store_close(store); }

int main(int argc, char **argv) {
    static const char *const known[] = {"--server", "--database", "--run", "--events", "--batch", "--clients", "--table", NULL};
    options_check(argc, argv, known, "--server CONNINFO --database NAME --run NAME --events N --batch B --clients C [--table keyed|plain]");
    const char *server = option_text(argc, argv, "--server", NULL);
    const char *database = option_text(argc, argv, "--database", NULL);
    const char *run = option_text(argc, argv, "--run", NULL);
    if (server == NULL || database == NULL || run == NULL) {
        fprintf(stderr, "postgres-ingest: --server, --database and --run are required\n");
        return 64;
    }
    static const char *const tables[] = {"keyed", "plain", NULL};
    table = option_choice(argc, argv, "--table", tables, "keyed") == 1 ? POSTGRES_TABLE_PLAIN : POSTGRES_TABLE_KEYED;
    char target[1024];
    snprintf(target, sizeof target, "%s dbname=%s", server, database);
    struct workload workload = {
        .run = run,
        .clients = (int)option_count(argc, argv, "--clients", -1),
        .events = option_count(argc, argv, "--events", -1),
        .batch = (int)option_count(argc, argv, "--batch", -1),
        .target = target,
        .open = open_store,
        .store = store_events,
        .close = close_store,
    };
    if (postgres_store_create(server, database, table) != 0) return 1;
    struct postgres_store *store = postgres_store_open(target, table);
    if (store == NULL || postgres_store_print_settings(store) != 0) return 1;
    postgres_store_close(store);
    struct figures figures;
    if (run_workload(&workload, &figures) != 0) return 1;
    print_figures(&figures);
    return 0;
}
