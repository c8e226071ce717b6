/* postgres-hourly: hourly aggregation in PostgreSQL, the SQL side of the comparison's aggregation.
 *
 *   postgres-hourly --server CONNINFO --database NAME --events N
 *
 * Loads N events of meter-bench's catch-up workload (1,000 resources × 3 meters) into a new
 * database NAME with durable 2,000-row INSERTs (timed apart, as "load"), then measures one query
 * right after, from sending it to having every row: the sum and count per resource, meter and
 * hour of enqueued time, as the server plans it (a parallel scan where it chooses one). Checks
 * that the groups hold every event and exactly 1.5 × N; prints a "settings" line and
 * "figures events=N groups=G elapsed=S load=S". */
#include <stdio.h>
#include <stdlib.h>

#include "clients.h"
#include "options.h"
#include "postgres_store.h"

static const char hourly[] =
    "SELECT resource_id, meter_name, date_trunc('hour', enqueued_time) AS hour, sum(quantity), count(*)"
    " FROM usage_events GROUP BY resource_id, meter_name, hour";

static const int load_batch = 2000;

int main(int argc, char **argv) {
    static const char *const known[] = {"--server", "--database", "--events", NULL};
    options_check(argc, argv, known, "--server CONNINFO --database NAME --events N");
    const char *server = option_text(argc, argv, "--server", NULL);
    const char *database = option_text(argc, argv, "--database", NULL);
    long events = option_count(argc, argv, "--events", -1);
    if (server == NULL || database == NULL) {
        fprintf(stderr, "postgres-hourly: --server and --database are required\n");
        return 64;
    }
    char target[1024];
    snprintf(target, sizeof target, "%s dbname=%s", server, database);
    if (postgres_store_create(server, database, POSTGRES_TABLE_KEYED) != 0) return 1;
    struct postgres_store *store = postgres_store_open(target, POSTGRES_TABLE_KEYED);
    struct event *batch = calloc(load_batch, sizeof *batch);
    if (store == NULL || batch == NULL || postgres_store_print_settings(store) != 0) return 1;

    double begin = monotonic_seconds();
    for (long first = 0; first < events; first += load_batch) {
        int count = events - first < load_batch ? (int)(events - first) : load_batch;
        for (int index = 0; index < count; index++) catch_up_event(&batch[index], first + index);
        if (postgres_store_insert(store, batch, count) != 0) return 1;
    }
    double load = monotonic_seconds() - begin;

    begin = monotonic_seconds();
    PGresult *result = PQexec(store->connection, hourly);
    double elapsed = monotonic_seconds() - begin;
    if (PQresultStatus(result) != PGRES_TUPLES_OK) {
        fprintf(stderr, "postgres: %s", PQerrorMessage(store->connection));
        return 1;
    }
    long groups = PQntuples(result);
    long counted = 0;
    long long units = 0;
    for (long row = 0; row < groups; row++) {
        long long sum;
        if (decimal_units(PQgetvalue(result, (int)row, 3), &sum) != 0) {
            fprintf(stderr, "postgres-hourly: sum %s is not an exact decimal\n", PQgetvalue(result, (int)row, 3));
            return 1;
        }
        units += sum;
        counted += atol(PQgetvalue(result, (int)row, 4));
    }
    PQclear(result);
    postgres_store_close(store);
    if (counted != events || units != events * 1500000000LL) {
        fprintf(stderr, "postgres-hourly: the groups hold %ld events and %lld units; expected %ld and %lld\n", counted,
                units, events, events * 1500000000LL);
        return 1;
    }
    printf("figures events=%ld groups=%ld elapsed=%.9f load=%.9f\n", events, groups, elapsed, load);
    return 0;
}
