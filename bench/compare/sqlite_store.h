/* The SQLite side's table and how events go into it, shared by its ingest and aggregation clients. */
#ifndef COMPARE_SQLITE_STORE_H
#define COMPARE_SQLITE_STORE_H

#include <sqlite3.h>

#include "events.h"

/* The table the events go into: KEYED holds what our log holds for an event (the idempotency id
 * under a UNIQUE index, the enqueued time, the properties checked as JSON); PLAIN is the four
 * columns of the independent reference clients (resource, meter, quantity as REAL, time in
 * milliseconds) without an index, the table of the comparison's headline figures. */
enum sqlite_table { SQLITE_TABLE_KEYED, SQLITE_TABLE_PLAIN };

/* A connection with its statements prepared. */
struct sqlite_store {
    sqlite3 *database;
    enum sqlite_table table;
    sqlite3_stmt *insert;
    sqlite3_stmt *begin;
    sqlite3_stmt *commit;
    sqlite3_stmt *rollback;
};

/* Replaces the database at `path` with an empty usage_events table `table`, in WAL mode. 0 or -1. */
int sqlite_store_create(const char *path, enum sqlite_table table);

/* Opens `path` durably (WAL, synchronous=FULL, checked) with a busy timeout, its insert prepared
 * for `table`; NULL on failure. */
struct sqlite_store *sqlite_store_open(const char *path, enum sqlite_table table);

/* Inserts `count` events in one transaction (one statement in autocommit when `count` is 1) and
 * returns 0 once COMMIT returned, with every event inserted; -1 otherwise. */
int sqlite_store_insert(struct sqlite_store *store, const struct event *events, int count);

/* Prints the line "settings SQLite ..." naming the version and the settings in force. */
void sqlite_store_print_settings(const struct sqlite_store *store);

void sqlite_store_close(struct sqlite_store *store);

#endif
