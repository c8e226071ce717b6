/* The PostgreSQL side's table and how events go into it, shared by its ingest and aggregation clients. */
#ifndef COMPARE_POSTGRES_STORE_H
#define COMPARE_POSTGRES_STORE_H

#include <libpq-fe.h>

#include "events.h"

/* The table the events go into: KEYED holds what our log holds for an event (the idempotency id
 * under a UNIQUE index, the enqueued time, exact quantities, the properties as json); PLAIN is the
 * four columns of the independent reference clients (resource as uuid, meter, quantity as double
 * precision, time as timestamptz) without an index, the table of the comparison's headline figures. */
enum postgres_table { POSTGRES_TABLE_KEYED, POSTGRES_TABLE_PLAIN };

/* A connection with the insert statements it has prepared (one per number of rows). */
struct postgres_store {
    PGconn *connection;
    enum postgres_table table;
    int prepared[8];
    int prepared_count;
    const char **values;
    int capacity;
};

/* Replaces database `database` of the server that `conninfo` names with one holding an empty
 * usage_events table `table`, then runs CHECKPOINT so every workload starts from a clean server.
 * 0 or -1. */
int postgres_store_create(const char *conninfo, const char *database, enum postgres_table table);

/* Opens `conninfo` (which names the database) to insert into `table`; NULL (after saying why) on failure. */
struct postgres_store *postgres_store_open(const char *conninfo, enum postgres_table table);

/* Inserts `count` events with one statement, its own transaction, and returns 0 once it has
 * committed (durable: synchronous_commit=on) with every event inserted; -1 otherwise. */
int postgres_store_insert(struct postgres_store *store, const struct event *events, int count);

/* Prints the line "settings PostgreSQL ..." with the settings in force; -1 (after saying why)
 * unless fsync and synchronous_commit are on. */
int postgres_store_print_settings(const struct postgres_store *store);

void postgres_store_close(struct postgres_store *store);

#endif
