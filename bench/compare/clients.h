/* Concurrent clients for the ingest workloads: each a forked process with its own connection,
 * all released at once, each timing its requests; the figures are computed as meter-bench
 * computes its own, so the columns of the comparison mean the same thing. */
#ifndef COMPARE_CLIENTS_H
#define COMPARE_CLIENTS_H

#include "events.h"

/* What a workload's clients do. */
struct workload {
    const char *run;  /* the case's name: part of every idempotency id, as in meter-bench */
    int clients;      /* processes, one connection each */
    long events;      /* in all; client k sends events/clients, the first events%clients one more */
    int batch;        /* events per request: one transaction, durable before it returns */
    const char *target; /* the database the clients open */
    /* Opens a client's connection; NULL (after saying why on stderr) when it cannot. */
    void *(*open)(const char *target);
    /* Stores `count` events in one transaction; 0 once it is durable, -1 on any failure. */
    int (*store)(void *connection, const struct event *events, int count);
    void (*close)(void *connection);
};

/* The outcome: rates over `elapsed` (first client's start to last client's end, wall time) or
 * `request_seconds` (the sum of the time inside requests), latencies per request. */
struct figures {
    long events;
    long requests;
    double elapsed;
    double request_seconds;
    double p50;
    double p99;
};

/* Runs the workload; 0 when every client stored every event, -1 (after saying why) otherwise. */
int run_workload(const struct workload *workload, struct figures *figures);

/* Prints the figures as the line scripts/bench-compare reads ("figures key=value ...", seconds). */
void print_figures(const struct figures *figures);

/* Seconds on the monotonic clock. */
double monotonic_seconds(void);

/* Sorts `count` latencies in place, smallest first. */
void sort_latencies(double *latencies, long count);

/* meter-bench's percentile: the value at index ⌊count·fraction⌋ of the sorted latencies (0 for none). */
double percentile(const double *sorted, long count, double fraction);

#endif
