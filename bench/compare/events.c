/* The events of every workload, mirroring meter-bench's sampleEvent and its catch-up workload
 * (Sources/Benchmarks/Benchmark.swift, AggregatorBenchmark.swift) field for field. */
#include "events.h"

#include <stdio.h>

void usage_event(struct event *event, const char *run, int client, long index) {
    snprintf(event->id, sizeof event->id, "%s-c%d-e%ld", run, client, index);
    snprintf(event->resource_id, sizeof event->resource_id, "fdc778a6-1281-40e4-cade-%012ld",
             100000000000L + index % 10000);
    event->meter = "cpu";
    event->quantity = "1.5";
    event->timestamp = "2022-09-19T13:26:22Z";
    event->properties = "{\"campaign\":\"spring\"}";
}

void catch_up_event(struct event *event, long index) {
    static const char *const meters[] = {"email", "cpu", "egress"};
    snprintf(event->id, sizeof event->id, "u-%ld", index);
    snprintf(event->resource_id, sizeof event->resource_id, "bench-%ld", index % 1000);
    event->meter = meters[index % 3];
    event->quantity = "1.5";
    event->timestamp = "2024-01-31T00:00:00Z";
    event->properties = NULL;
}

int decimal_units(const char *text, long long *units) {
    const char *p = text;
    int negative = *p == '-';
    if (negative) p++;
    if (*p < '0' || *p > '9') return -1;
    long long whole = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (__builtin_mul_overflow(whole, 10, &whole) || __builtin_add_overflow(whole, *p - '0', &whole)) return -1;
    }
    long long fraction = 0;
    int places = 0;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') return -1;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (++places > 9) return -1;
            fraction = fraction * 10 + (*p - '0');
        }
    }
    if (*p != '\0') return -1;
    for (; places < 9; places++) fraction *= 10;
    long long value;
    if (__builtin_mul_overflow(whole, 1000000000LL, &value) || __builtin_add_overflow(value, fraction, &value)) return -1;
    *units = negative ? -value : value;
    return 0;
}
