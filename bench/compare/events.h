/* The events the SQL clients store: the same shape and values as meter-bench's (Sources/Benchmarks),
 * so that SQLite and PostgreSQL are given exactly the events our ingest is given. */
#ifndef COMPARE_EVENTS_H
#define COMPARE_EVENTS_H

/* One usage event as text, the form a client hands to a database driver. */
struct event {
    char id[96];            /* idempotency id, unique within a workload */
    char resource_id[48];
    const char *meter;
    const char *quantity;   /* exact decimal text */
    const char *timestamp;  /* ISO-8601, UTC */
    const char *properties; /* JSON object text, or NULL for none */
};

/* meter-bench's ingest cases: event `index` of client `client` in case `run`
 * (id "<run>-c<client>-e<index>", 10,000 resources, meter "cpu", 1.5, {"campaign":"spring"}). */
void usage_event(struct event *event, const char *run, int client, long index);

/* meter-bench's catch-up workload: event `index` (id "u-<index>", 1,000 resources × the meters
 * email, cpu and egress in turn, 1.5, no properties). */
void catch_up_event(struct event *event, long index);

/* The exact decimal `text` in units of 10^-9 (how the SQLite table keeps quantities exactly).
 * Returns 0, or -1 when `text` is not a decimal, has more than 9 decimal places or is out of range. */
int decimal_units(const char *text, long long *units);

/* `text`, "YYYY-MM-DDTHH:MM:SSZ", as milliseconds since 1970-01-01T00:00:00Z (how the reference
 * clients' SQLite table keeps times). Returns 0, or -1 when `text` is not of that form. */
int timestamp_milliseconds(const char *text, long long *milliseconds);

#endif
