/* The SQLite side's table and how events go into it, shared by its ingest and aggregation clients. */
#ifndef COMPARE_SQLITE_STORE_H
#define COMPARE_SQLITE_STORE_H

#include <sqlite3.h>

#include "events.h"

/* A connection with its statements prepared. */
struct sqlite_store {
    sqlite3 *database;
    sqlite3_stmt *insert;
    sqlite3_stmt *begin;
    sqlite3_stmt *commit;
    sqlite3_stmt *rollback;
};

/* Replaces the database at `path` with an empty usage_events table, in WAL mode. 0 or -1. */
int sqlite_store_create(const char *path);

/* Opens `path` durably (WAL, synchronous=FULL, checked) with a busy timeout; NULL on failure. */
struct sqlite_store *sqlite_store_open(const char *path);

/* Inserts `count` events in one transaction (one statement in autocommit when `count` is 1) and
 * returns 0 once COMMIT returned, with every event inserted; -1 otherwise. */
int sqlite_store_insert(struct sqlite_store *store, const struct event *events, int count);

/* Prints the line "settings SQLite ..." naming the version and the settings in force. */
void sqlite_store_print_settings(const struct sqlite_store *store);

void sqlite_store_close(struct sqlite_store *store);

#endif
