/* PostgreSQL's table for usage events and its durable insert (postgres_store.h).
 *
 * The keyed table holds what our log holds for an event: a sequence (an identity column without an
 * index: the heap's order stands for it, as the log's order does for ours), the idempotency id
 * under a UNIQUE index (INSERT ... ON CONFLICT DO NOTHING, and every insert here must add a row),
 * the enqueued time set by the server (now()), resource, meter, the quantity as numeric (exact),
 * the timestamp as timestamptz and the properties as json (both parsed by the server).
 * A request is one prepared multi-row INSERT (text parameters, typed) over the Unix socket: one
 * round trip and one transaction, committed durably (fsync=on, synchronous_commit=on) before the
 * server answers. */
#include "postgres_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { keyed_columns = 6, plain_columns = 4 };

/* text, text, text, numeric, timestamptz, json */
static const Oid keyed_types[keyed_columns] = {25, 25, 25, 1700, 1184, 114};

/* The reference clients' table (their setup_pg.sh): uuid, text, double precision, timestamptz. */
static const Oid plain_types[plain_columns] = {2950, 25, 701, 1184};

static int columns_of(enum postgres_table table) { return table == POSTGRES_TABLE_PLAIN ? plain_columns : keyed_columns; }

static int fail(PGconn *connection, const char *what) {
    fprintf(stderr, "postgres: %s: %s", what, connection != NULL ? PQerrorMessage(connection) : "out of memory\n");
    return -1;
}

static int execute(PGconn *connection, const char *command) {
    PGresult *result = PQexec(connection, command);
    int status = PQresultStatus(result) == PGRES_COMMAND_OK ? 0 : fail(connection, command);
    PQclear(result);
    return status;
}

/* Connects to `conninfo`, to `database` instead of the one it names when `database` is not NULL:
 * libpq reads the first dbname as a connection string and a later one as a plain name. */
static PGconn *connect_to(const char *conninfo, const char *database) {
    const char *keywords[] = {"dbname", database != NULL ? "dbname" : NULL, NULL};
    const char *values[] = {conninfo, database, NULL};
    PGconn *connection = PQconnectdbParams(keywords, values, 1);
    if (connection == NULL || PQstatus(connection) != CONNECTION_OK) {
        fail(connection, "connect");
        PQfinish(connection);
        return NULL;
    }
    return connection;
}

/* Drops the server's notices ("database ... does not exist, skipping"): errors are reported apart. */
static void ignore_notice(void *context, const char *message) {
    (void)context;
    (void)message;
}

int postgres_store_create(const char *conninfo, const char *database, enum postgres_table table) {
    char command[256];
    PGconn *server = connect_to(conninfo, "postgres");
    if (server == NULL) return -1;
    PQsetNoticeProcessor(server, ignore_notice, NULL);
    snprintf(command, sizeof command, "DROP DATABASE IF EXISTS %s", database);
    int status = execute(server, command);
    snprintf(command, sizeof command, "CREATE DATABASE %s", database);
    if (status == 0) status = execute(server, command);
    PQfinish(server);
    if (status != 0) return -1;
    PGconn *connection = connect_to(conninfo, database);
    if (connection == NULL) return -1;
    status = execute(connection,
                     table == POSTGRES_TABLE_PLAIN
                         ? "CREATE TABLE usage_events(resource_id uuid NOT NULL, meter_name text NOT NULL,"
                           " quantity double precision NOT NULL, ts timestamptz NOT NULL)"
                         : "CREATE TABLE usage_events("
                     " sequence bigint GENERATED ALWAYS AS IDENTITY,"
                     " idempotency_id text NOT NULL UNIQUE,"
                     " enqueued_time timestamptz NOT NULL DEFAULT now(),"
                     " resource_id text NOT NULL,"
                     " meter_name text NOT NULL,"
                     " quantity numeric NOT NULL,"
                     " \"timestamp\" timestamptz NOT NULL,"
                     " properties json)");
    if (status == 0) status = execute(connection, "CHECKPOINT");
    PQfinish(connection);
    return status;
}

struct postgres_store *postgres_store_open(const char *conninfo, enum postgres_table table) {
    struct postgres_store *store = calloc(1, sizeof *store);
    if (store == NULL) return NULL;
    store->table = table;
    store->connection = connect_to(conninfo, NULL);
    if (store->connection == NULL) {
        free(store);
        return NULL;
    }
    return store;
}

/* Prepares "insert_<count>", the INSERT of `count` rows, once per connection. */
static int prepare(struct postgres_store *store, int count, char *name, size_t size) {
    snprintf(name, size, "insert_%d", count);
    for (int index = 0; index < store->prepared_count; index++) {
        if (store->prepared[index] == count) return 0;
    }
    if (store->prepared_count == (int)(sizeof store->prepared / sizeof store->prepared[0])) {
        fprintf(stderr, "postgres: too many batch sizes\n");
        return -1;
    }
    int columns = columns_of(store->table);
    const Oid *column_types = store->table == POSTGRES_TABLE_PLAIN ? plain_types : keyed_types;
    size_t length = 200 + (size_t)count * 64;
    char *text = malloc(length);
    Oid *types = malloc(sizeof *types * (size_t)count * columns);
    if (text == NULL || types == NULL) return -1;
    size_t used = (size_t)snprintf(text, length, "%s",
                                   store->table == POSTGRES_TABLE_PLAIN
                                       ? "INSERT INTO usage_events(resource_id, meter_name, quantity, ts) VALUES "
                                       : "INSERT INTO usage_events(idempotency_id, resource_id, meter_name, quantity,"
                                         " \"timestamp\", properties) VALUES ");
    for (int row = 0; row < count; row++) {
        int first = row * columns + 1;
        used += (size_t)snprintf(text + used, length - used, "%s($%d", row > 0 ? "," : "", first);
        for (int column = 1; column < columns; column++) {
            used += (size_t)snprintf(text + used, length - used, ",$%d", first + column);
        }
        used += (size_t)snprintf(text + used, length - used, ")");
        memcpy(types + row * columns, column_types, sizeof *types * (size_t)columns);
    }
    if (store->table == POSTGRES_TABLE_KEYED) snprintf(text + used, length - used, " ON CONFLICT (idempotency_id) DO NOTHING");
    PGresult *result = PQprepare(store->connection, name, text, count * columns, types);
    int status = PQresultStatus(result) == PGRES_COMMAND_OK ? 0 : fail(store->connection, "prepare");
    PQclear(result);
    free(text);
    free(types);
    if (status == 0) store->prepared[store->prepared_count++] = count;
    return status;
}

int postgres_store_insert(struct postgres_store *store, const struct event *events, int count) {
    char name[32];
    if (prepare(store, count, name, sizeof name) != 0) return -1;
    int columns = columns_of(store->table);
    if (store->capacity < count * columns) {
        free(store->values);
        store->values = malloc(sizeof *store->values * (size_t)count * columns);
        if (store->values == NULL) return -1;
        store->capacity = count * columns;
    }
    for (int row = 0; row < count; row++) {
        const char **values = store->values + row * columns;
        if (store->table == POSTGRES_TABLE_PLAIN) {
            values[0] = events[row].resource_id;
            values[1] = events[row].meter;
            values[2] = events[row].quantity;
            values[3] = events[row].timestamp;
            continue;
        }
        values[0] = events[row].id;
        values[1] = events[row].resource_id;
        values[2] = events[row].meter;
        values[3] = events[row].quantity;
        values[4] = events[row].timestamp;
        values[5] = events[row].properties;
    }
    PGresult *result = PQexecPrepared(store->connection, name, count * columns, store->values, NULL, NULL, 0);
    int status = PQresultStatus(result) == PGRES_COMMAND_OK ? 0 : fail(store->connection, "insert");
    if (status == 0 && atol(PQcmdTuples(result)) != count) {
        fprintf(stderr, "postgres: inserted %s of %d events (a repeated id?)\n", PQcmdTuples(result), count);
        status = -1;
    }
    PQclear(result);
    return status;
}

int postgres_store_print_settings(const struct postgres_store *store) {
    static const char *const names[] = {"server_version", "fsync", "synchronous_commit", "wal_sync_method",
                                        "full_page_writes", "commit_delay", "shared_buffers", "max_wal_size",
                                        "max_parallel_workers_per_gather"};
    enum { count = sizeof names / sizeof names[0] };
    char values[count][64];
    for (int index = 0; index < count; index++) {
        char command[64];
        snprintf(command, sizeof command, "SHOW %s", names[index]);
        PGresult *result = PQexec(store->connection, command);
        if (PQresultStatus(result) != PGRES_TUPLES_OK) {
            PQclear(result);
            return fail(store->connection, command);
        }
        snprintf(values[index], sizeof values[index], "%s", PQgetvalue(result, 0, 0));
        PQclear(result);
    }
    if (strcmp(values[1], "on") != 0 || strcmp(values[2], "on") != 0) {
        fprintf(stderr, "postgres: not durable: fsync=%s, synchronous_commit=%s\n", values[1], values[2]);
        return -1;
    }
    printf("settings PostgreSQL %s (C client: libpq %d, Unix socket, %s table):", values[0], PQlibVersion(),
           store->table == POSTGRES_TABLE_PLAIN ? "plain" : "keyed");
    for (int index = 1; index < count; index++) printf("%s %s=%s", index > 1 ? "," : "", names[index], values[index]);
    printf("; other settings default\n");
    return 0;
}

void postgres_store_close(struct postgres_store *store) {
    if (store == NULL) return;
    PQfinish(store->connection);
    free(store->values);
    free(store);
}
