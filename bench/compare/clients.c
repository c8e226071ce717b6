/* The clients of an ingest workload (clients.h). Each is a process of its own, as separate
 * programs talking to a database would be: it opens its connection, reports ready, waits for
 * the common start, then sends its share of the events request by request and times each one.
 * The parent only starts them, releases them together and gathers the figures. */
#define _GNU_SOURCE
#include "clients.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double monotonic_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* What a client reports back, in memory shared with the parent. */
struct outcome {
    double start;
    double end;
    long events;
    long requests;
};

static long quota_of(const struct workload *workload, int client) {
    return workload->events / workload->clients + (client < workload->events % workload->clients ? 1 : 0);
}

static long requests_of(const struct workload *workload, int client) {
    return (quota_of(workload, client) + workload->batch - 1) / workload->batch;
}

static void *shared_memory(size_t size) {
    void *memory = mmap(NULL, size > 0 ? size : 1, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return memory == MAP_FAILED ? NULL : memory;
}

static _Noreturn void run_client(const struct workload *workload, int client, int ready, int go,
                                 struct outcome *outcome, double *latencies) {
    void *connection = workload->open(workload->target);
    char word = connection != NULL ? 'r' : 'f';
    if (write(ready, &word, 1) != 1 || connection == NULL) _exit(1);
    if (read(go, &word, 1) != 1) _exit(1);
    struct event *events = calloc((size_t)workload->batch, sizeof *events);
    if (events == NULL) _exit(1);
    long quota = quota_of(workload, client);
    long sent = 0;
    long requests = 0;
    outcome->start = monotonic_seconds();
    while (sent < quota) {
        int count = quota - sent < workload->batch ? (int)(quota - sent) : workload->batch;
        for (int index = 0; index < count; index++) usage_event(&events[index], workload->run, client, sent + index);
        double begin = monotonic_seconds();
        if (workload->store(connection, events, count) != 0) _exit(1);
        latencies[requests++] = monotonic_seconds() - begin;
        sent += count;
    }
    outcome->end = monotonic_seconds();
    outcome->events = sent;
    outcome->requests = requests;
    workload->close(connection);
    _exit(0);
}

/* Waits until every client is ready; -1 as soon as one says it cannot be or exits first. */
static int await_ready(int ready, int clients) {
    int count = 0;
    while (count < clients) {
        struct pollfd poller = {.fd = ready, .events = POLLIN};
        if (poll(&poller, 1, 200) > 0) {
            char words[256];
            ssize_t length = read(ready, words, sizeof words);
            if (length <= 0) return -1;
            for (ssize_t index = 0; index < length; index++) {
                if (words[index] != 'r') return -1;
                count++;
            }
        } else {
            int status;
            if (waitpid(-1, &status, WNOHANG) > 0) return -1;
        }
    }
    return 0;
}

static int by_value(const void *left, const void *right) {
    double a = *(const double *)left;
    double b = *(const double *)right;
    return a < b ? -1 : a > b;
}

void sort_latencies(double *latencies, long count) { qsort(latencies, (size_t)count, sizeof *latencies, by_value); }

double percentile(const double *sorted, long count, double fraction) {
    if (count == 0) return 0;
    long index = (long)((double)count * fraction);
    return sorted[index < count ? index : count - 1];
}

int run_workload(const struct workload *workload, struct figures *figures) {
    if (workload->clients < 1 || workload->batch < 1 || workload->events < workload->clients) {
        fprintf(stderr, "%s: needs at least one event per client\n", workload->run);
        return -1;
    }
    long total = 0;
    long *offsets = calloc((size_t)workload->clients, sizeof *offsets);
    pid_t *clients = calloc((size_t)workload->clients, sizeof *clients);
    if (offsets == NULL || clients == NULL) return -1;
    for (int client = 0; client < workload->clients; client++) {
        offsets[client] = total;
        total += requests_of(workload, client);
    }
    struct outcome *outcomes = shared_memory(sizeof *outcomes * (size_t)workload->clients);
    double *latencies = shared_memory(sizeof *latencies * (size_t)total);
    int ready[2];
    int go[2];
    if (outcomes == NULL || latencies == NULL || pipe(ready) != 0 || pipe(go) != 0) {
        perror("run_workload");
        return -1;
    }
    fflush(NULL);
    for (int client = 0; client < workload->clients; client++) {
        clients[client] = fork();
        if (clients[client] < 0) {
            perror("fork");
            for (int started = 0; started < client; started++) kill(clients[started], SIGKILL);
            return -1;
        }
        if (clients[client] == 0) {
            close(ready[0]);
            close(go[1]);
            run_client(workload, client, ready[1], go[0], &outcomes[client], &latencies[offsets[client]]);
        }
    }
    close(ready[1]);
    close(go[0]);
    int failed = await_ready(ready[0], workload->clients) != 0;
    if (failed) {
        fprintf(stderr, "%s: a client could not connect\n", workload->run);
        for (int client = 0; client < workload->clients; client++) kill(clients[client], SIGKILL);
    } else {
        for (int client = 0; client < workload->clients; client++) {
            if (write(go[1], "g", 1) != 1) failed = 1;
        }
    }
    close(go[1]);
    close(ready[0]);
    for (int client = 0; client < workload->clients; client++) {
        int status;
        if (waitpid(clients[client], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
    }
    if (failed) {
        fprintf(stderr, "%s: a client failed\n", workload->run);
        return -1;
    }
    *figures = (struct figures){0};
    double start = outcomes[0].start;
    double end = outcomes[0].end;
    for (int client = 0; client < workload->clients; client++) {
        figures->events += outcomes[client].events;
        figures->requests += outcomes[client].requests;
        if (outcomes[client].start < start) start = outcomes[client].start;
        if (outcomes[client].end > end) end = outcomes[client].end;
    }
    if (figures->events != workload->events || figures->requests != total) {
        fprintf(stderr, "%s: stored %ld of %ld events\n", workload->run, figures->events, workload->events);
        return -1;
    }
    figures->elapsed = end - start;
    for (long index = 0; index < total; index++) figures->request_seconds += latencies[index];
    sort_latencies(latencies, total);
    figures->p50 = percentile(latencies, total, 0.5);
    figures->p99 = percentile(latencies, total, 0.99);
    munmap(latencies, sizeof *latencies * (size_t)total);
    munmap(outcomes, sizeof *outcomes * (size_t)workload->clients);
    free(offsets);
    free(clients);
    return 0;
}

void print_figures(const struct figures *figures) {
    printf("figures events=%ld requests=%ld elapsed=%.9f request_seconds=%.9f p50=%.9f p99=%.9f\n", figures->events,
           figures->requests, figures->elapsed, figures->request_seconds, figures->p50, figures->p99);
}
