/* sqlite-hourly: hourly aggregation in SQLite, the SQL side of the comparison's aggregation.
 *
 *   sqlite-hourly --database FILE --events N
 *
 * Loads N events of meter-bench's catch-up workload (1,000 resources × 3 meters) into a new
 * database FILE in durable transactions of 2,000 rows (timed apart, as "load"), then measures
 * one query, from prepare to the last row: the sum and count per resource, meter and hour of
 * enqueued time. Checks that the groups hold every event and exactly 1.5 × N; prints a
 * "settings" line and "figures events=N groups=G elapsed=S load=S". */
#include <stdio.h>
#include <stdlib.h>

#include "clients.h"
#include "options.h"
#include "sqlite_store.h"

static const char hourly[] =
    "SELECT resource_id, meter_name, strftime('%Y-%m-%dT%H:00:00Z', enqueued_time) AS hour, sum(quantity), count(*)"
    " FROM usage_events GROUP BY resource_id, meter_name, hour";

static const int load_batch = 2000;

int main(int argc, char **argv) {
    static const char *const known[] = {"--database", "--events", NULL};
    options_check(argc, argv, known, "--database FILE --events N");
    const char *path = option_text(argc, argv, "--database", NULL);
    long events = option_count(argc, argv, "--events", -1);
    if (path == NULL) {
        fprintf(stderr, "sqlite-hourly: --database is required\n");
        return 64;
    }
    if (sqlite_store_create(path, SQLITE_TABLE_KEYED) != 0) return 1;
    struct sqlite_store *store = sqlite_store_open(path, SQLITE_TABLE_KEYED);
    struct event *batch = calloc(load_batch, sizeof *batch);
    if (store == NULL || batch == NULL) return 1;
    sqlite_store_print_settings(store);

    double begin = monotonic_seconds();
    for (long first = 0; first < events; first += load_batch) {
        int count = events - first < load_batch ? (int)(events - first) : load_batch;
        for (int index = 0; index < count; index++) catch_up_event(&batch[index], first + index);
        if (sqlite_store_insert(store, batch, count) != 0) return 1;
    }
    double load = monotonic_seconds() - begin;

    begin = monotonic_seconds();
    sqlite3_stmt *query;
    if (sqlite3_prepare_v2(store->database, hourly, -1, &query, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(store->database));
        return 1;
    }
    long groups = 0;
    long counted = 0;
    long long units = 0;
    int step;
    while ((step = sqlite3_step(query)) == SQLITE_ROW) {
        groups++;
        units += sqlite3_column_int64(query, 3);
        counted += sqlite3_column_int64(query, 4);
    }
    double elapsed = monotonic_seconds() - begin;
    if (step != SQLITE_DONE) {
        fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(store->database));
        return 1;
    }
    sqlite3_finalize(query);
    sqlite_store_close(store);
    if (counted != events || units != events * 1500000000LL) {
        fprintf(stderr, "sqlite-hourly: the groups hold %ld events and %lld units; expected %ld and %lld\n", counted, units,
                events, events * 1500000000LL);
        return 1;
    }
    printf("figures events=%ld groups=%ld elapsed=%.9f load=%.9f\n", events, groups, elapsed, load);
    return 0;
}
