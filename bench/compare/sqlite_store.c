/* SQLite's table for usage events and its durable insert (sqlite_store.h).
 *
 * The keyed table holds what our log holds for an event: a sequence (the rowid), the idempotency id
 * under a UNIQUE index (a repeat is ignored: INSERT ... ON CONFLICT DO NOTHING, and every insert
 * here must add a row), the enqueued time set by the store, resource, meter, the quantity exactly
 * (SQLite has no decimal type: an integer of 10^-9 units, converted by the client), the event's
 * timestamp as ISO-8601 text and the properties as JSON text checked by json_valid.
 * Durability: journal_mode=WAL with synchronous=FULL, so every COMMIT syncs the WAL before it
 * returns. Writers that find the database locked wait in SQLite's busy handler (60 s at most). */
#include "sqlite_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char keyed_schema[] =
    "CREATE TABLE usage_events("
    " sequence INTEGER PRIMARY KEY,"
    " idempotency_id TEXT NOT NULL UNIQUE,"
    " enqueued_time TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),"
    " resource_id TEXT NOT NULL,"
    " meter_name TEXT NOT NULL,"
    " quantity INTEGER NOT NULL,"
    " timestamp TEXT NOT NULL,"
    " properties TEXT CHECK (properties IS NULL OR json_valid(properties)))";

static const char keyed_insert[] =
    "INSERT INTO usage_events(idempotency_id, resource_id, meter_name, quantity, timestamp, properties)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(idempotency_id) DO NOTHING";

/* The reference clients' table and insert, column for column (their setup_sqlite.sh). */
static const char plain_schema[] =
    "CREATE TABLE usage_events(resource_id TEXT NOT NULL, meter_name TEXT NOT NULL, quantity REAL NOT NULL,"
    " ts_ms INTEGER NOT NULL)";

static const char plain_insert[] = "INSERT INTO usage_events(resource_id, meter_name, quantity, ts_ms) VALUES (?, ?, ?, ?)";

static const int busy_milliseconds = 60000;

static int fail(sqlite3 *database, const char *what) {
    fprintf(stderr, "sqlite: %s: %s\n", what, database != NULL ? sqlite3_errmsg(database) : "out of memory");
    return -1;
}

int sqlite_store_create(const char *path, enum sqlite_table table) {
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (int index = 0; index < 3; index++) {
        char name[4096];
        snprintf(name, sizeof name, "%s%s", path, suffixes[index]);
        unlink(name);
    }
    sqlite3 *database = NULL;
    int result = 0;
    if (sqlite3_open(path, &database) != SQLITE_OK || sqlite3_exec(database, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(database, table == SQLITE_TABLE_PLAIN ? plain_schema : keyed_schema, NULL, NULL, NULL) != SQLITE_OK) {
        result = fail(database, path);
    }
    sqlite3_close(database);
    return result;
}

/* The single value of a one-row query, as text; "" when there is none. */
static void text_of(sqlite3 *database, const char *query, char *text, size_t size) {
    sqlite3_stmt *statement;
    text[0] = '\0';
    if (sqlite3_prepare_v2(database, query, -1, &statement, NULL) != SQLITE_OK) return;
    if (sqlite3_step(statement) == SQLITE_ROW) snprintf(text, size, "%s", (const char *)sqlite3_column_text(statement, 0));
    sqlite3_finalize(statement);
}

struct sqlite_store *sqlite_store_open(const char *path, enum sqlite_table table) {
    struct sqlite_store *store = calloc(1, sizeof *store);
    if (store == NULL) return NULL;
    store->table = table;
    if (sqlite3_open_v2(path, &store->database, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(store->database, busy_milliseconds) != SQLITE_OK ||
        sqlite3_exec(store->database, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(store->database, table == SQLITE_TABLE_PLAIN ? plain_insert : keyed_insert, -1, &store->insert,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(store->database, "BEGIN IMMEDIATE", -1, &store->begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(store->database, "COMMIT", -1, &store->commit, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(store->database, "ROLLBACK", -1, &store->rollback, NULL) != SQLITE_OK) {
        fail(store->database, path);
        sqlite_store_close(store);
        return NULL;
    }
    char mode[32];
    char synchronous[32];
    text_of(store->database, "PRAGMA journal_mode", mode, sizeof mode);
    text_of(store->database, "PRAGMA synchronous", synchronous, sizeof synchronous);
    if (strcmp(mode, "wal") != 0 || strcmp(synchronous, "2") != 0) {
        fprintf(stderr, "sqlite: settings not applied: journal_mode=%s, synchronous=%s\n", mode, synchronous);
        sqlite_store_close(store);
        return NULL;
    }
    return store;
}

static int run(struct sqlite_store *store, sqlite3_stmt *statement, const char *what) {
    int result = sqlite3_step(statement);
    sqlite3_reset(statement);
    return result == SQLITE_DONE ? 0 : fail(store->database, what);
}

/* Binds a row of the reference clients' table: the quantity as a double (atof, as they do), the
 * time in milliseconds since 1970. 0 or -1. */
static int bind_plain(sqlite3_stmt *statement, const struct event *event) {
    long long milliseconds;
    if (timestamp_milliseconds(event->timestamp, &milliseconds) != 0) {
        fprintf(stderr, "sqlite: timestamp %s is not YYYY-MM-DDTHH:MM:SSZ\n", event->timestamp);
        return -1;
    }
    sqlite3_bind_text(statement, 1, event->resource_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(statement, 2, event->meter, -1, SQLITE_STATIC);
    sqlite3_bind_double(statement, 3, atof(event->quantity));
    sqlite3_bind_int64(statement, 4, milliseconds);
    return 0;
}

/* Binds a row of the keyed table: the quantity exactly, in units of 10^-9. 0 or -1. */
static int bind_keyed(sqlite3_stmt *statement, const struct event *event) {
    long long units;
    if (decimal_units(event->quantity, &units) != 0) {
        fprintf(stderr, "sqlite: quantity %s is not an exact decimal with at most 9 places\n", event->quantity);
        return -1;
    }
    sqlite3_bind_text(statement, 1, event->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(statement, 2, event->resource_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(statement, 3, event->meter, -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 4, units);
    sqlite3_bind_text(statement, 5, event->timestamp, -1, SQLITE_STATIC);
    if (event->properties != NULL) {
        sqlite3_bind_text(statement, 6, event->properties, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(statement, 6);
    }
    return 0;
}

static int insert_one(struct sqlite_store *store, const struct event *event) {
    sqlite3_stmt *statement = store->insert;
    if ((store->table == SQLITE_TABLE_PLAIN ? bind_plain(statement, event) : bind_keyed(statement, event)) != 0) return -1;
    if (run(store, statement, "insert") != 0) return -1;
    if (sqlite3_changes(store->database) != 1) {
        fprintf(stderr, "sqlite: event %s was not inserted (a repeated id?)\n", event->id);
        return -1;
    }
    return 0;
}

int sqlite_store_insert(struct sqlite_store *store, const struct event *events, int count) {
    if (count == 1) return insert_one(store, &events[0]);
    if (run(store, store->begin, "BEGIN IMMEDIATE") != 0) return -1;
    for (int index = 0; index < count; index++) {
        if (insert_one(store, &events[index]) != 0) {
            run(store, store->rollback, "ROLLBACK");
            return -1;
        }
    }
    return run(store, store->commit, "COMMIT");
}

void sqlite_store_print_settings(const struct sqlite_store *store) {
    char mode[32];
    char synchronous[32];
    char checkpoint[32];
    text_of(store->database, "PRAGMA journal_mode", mode, sizeof mode);
    text_of(store->database, "PRAGMA synchronous", synchronous, sizeof synchronous);
    text_of(store->database, "PRAGMA wal_autocheckpoint", checkpoint, sizeof checkpoint);
    printf("settings SQLite %s (C API, in process, %s table): journal_mode=%s, synchronous=%s (FULL), wal_autocheckpoint=%s pages,"
           " busy timeout %d ms; other settings default\n",
           sqlite3_libversion(), store->table == SQLITE_TABLE_PLAIN ? "plain" : "keyed", mode, synchronous, checkpoint, busy_milliseconds);
}

void sqlite_store_close(struct sqlite_store *store) {
    if (store == NULL) return;
    sqlite3_finalize(store->insert);
    sqlite3_finalize(store->begin);
    sqlite3_finalize(store->commit);
    sqlite3_finalize(store->rollback);
    sqlite3_close(store->database);
    free(store);
}
