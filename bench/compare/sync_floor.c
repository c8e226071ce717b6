/* sync-floor: what one durable write costs on this disk, the floor under every durable
 * acknowledgement of the comparison (ours and the databases').
 *
 *   sync-floor --file PATH --bytes N --writes K
 *
 * Writes zeros over N × K bytes of a new file PATH and syncs it (as our log's segments and
 * PostgreSQL's WAL segments are filled ahead), then K times: pwrite N bytes after the previous
 * ones and fdatasync. Each latency is one pwrite and its fdatasync. Prints
 * "figures bytes=N writes=K p50=S p99=S mean=S" (seconds) and removes PATH. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clients.h"
#include "options.h"

/* Writes all of buffer[0..count) at `offset`; 0 or -1 (after saying why). */
static int write_all(int descriptor, const char *buffer, size_t count, off_t offset, const char *path) {
    while (count > 0) {
        ssize_t written = pwrite(descriptor, buffer, count, offset);
        if (written < 0) {
            perror(path);
            return -1;
        }
        buffer += written;
        count -= (size_t)written;
        offset += written;
    }
    return 0;
}

int main(int argc, char **argv) {
    static const char *const known[] = {"--file", "--bytes", "--writes", NULL};
    options_check(argc, argv, known, "--file PATH --bytes N --writes K");
    const char *path = option_text(argc, argv, "--file", NULL);
    if (path == NULL) {
        fprintf(stderr, "sync-floor: --file is required\n");
        return 64;
    }
    size_t bytes = (size_t)option_count(argc, argv, "--bytes", -1);
    int writes = (int)option_count(argc, argv, "--writes", -1);
    int descriptor = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (descriptor < 0) {
        perror(path);
        return 1;
    }
    enum { chunk = 1 << 20 };
    char *zeros = calloc(1, chunk);
    char *record = malloc(bytes);
    double *latencies = malloc(sizeof *latencies * (size_t)writes);
    if (zeros == NULL || record == NULL || latencies == NULL) return 1;
    memset(record, 'x', bytes);
    off_t total = (off_t)bytes * writes;
    for (off_t offset = 0; offset < total; offset += chunk) {
        size_t count = total - offset < chunk ? (size_t)(total - offset) : chunk;
        if (write_all(descriptor, zeros, count, offset, path) != 0) return 1;
    }
    if (fsync(descriptor) != 0) {
        perror(path);
        return 1;
    }
    double begin = monotonic_seconds();
    for (int index = 0; index < writes; index++) {
        double started = monotonic_seconds();
        if (write_all(descriptor, record, bytes, (off_t)bytes * index, path) != 0) return 1;
        if (fdatasync(descriptor) != 0) {
            perror(path);
            return 1;
        }
        latencies[index] = monotonic_seconds() - started;
    }
    double elapsed = monotonic_seconds() - begin;
    close(descriptor);
    unlink(path);
    sort_latencies(latencies, writes);
    printf("figures bytes=%zu writes=%d p50=%.9f p99=%.9f mean=%.9f\n", bytes, writes, percentile(latencies, writes, 0.5),
           percentile(latencies, writes, 0.99), elapsed / writes);
    return 0;
}
