/* sqlite-ingest: durable ingest into SQLite, the SQL side of the comparison's ingest workloads.
 *
 *   sqlite-ingest --database FILE --run NAME --events N --batch B --clients C [--table keyed|plain]
 *
 * --table keyed (the default) stores what our log stores for an event, the idempotency id under a
 * UNIQUE index included; --table plain the reference clients' four columns without an index.
 * Measures: C client processes, each with its own connection to FILE (WAL, synchronous=FULL),
 * insert N events in all (meter-bench's events for case NAME), B per transaction; every
 * transaction is durable (WAL synced) before COMMIT returns and before the client sends the next.
 * SQLite takes one writer at a time, so more clients only queue for the write lock (no group
 * commit). Each latency is one transaction, from BEGIN (the rows already built) to COMMIT's
 * return. Prints a "settings" line and a "figures" line (clients.h); the database is made anew. */
#include <stdio.h>

#include "clients.h"
#include "options.h"
#include "sqlite_store.h"

/* The table of this run (--table): every client process opens the same. */
static enum sqlite_table table = SQLITE_TABLE_KEYED;

static void *open_store(const char *path) { return sqlite_store_open(path, table); }

static int store_events(void *store, const struct event *events, int count) {
    return sqlite_store_insert(store, events, count);
}

static void close_store(void *store) { sqlite_store_close(store); }

int main(int argc, char **argv) {
    static const char *const known[] = {"--database", "--run", "--events", "--batch", "--clients", "--table", NULL};
    options_check(argc, argv, known, "--database FILE --run NAME --events N --batch B --clients C [--table keyed|plain]");
    const char *path = option_text(argc, argv, "--database", NULL);
    const char *run = option_text(argc, argv, "--run", NULL);
    if (path == NULL || run == NULL) {
        fprintf(stderr, "sqlite-ingest: --database and --run are required\n");
        return 64;
    }
    static const char *const tables[] = {"keyed", "plain", NULL};
    table = option_choice(argc, argv, "--table", tables, "keyed") == 1 ? SQLITE_TABLE_PLAIN : SQLITE_TABLE_KEYED;
    struct workload workload = {
        .run = run,
        .clients = (int)option_count(argc, argv, "--clients", -1),
        .events = option_count(argc, argv, "--events", -1),
        .batch = (int)option_count(argc, argv, "--batch", -1),
        .target = path,
        .open = open_store,
        .store = store_events,
        .close = close_store,
    };
    if (sqlite_store_create(path, table) != 0) return 1;
    struct sqlite_store *store = sqlite_store_open(path, table);
    if (store == NULL) return 1;
    sqlite_store_print_settings(store);
    sqlite_store_close(store);
    struct figures figures;
    if (run_workload(&workload, &figures) != 0) return 1;
    print_figures(&figures);
    return 0;
}
