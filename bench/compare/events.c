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

/* The digits of text[0..count) as a number, or -1 when one is not a digit. */
static long digits(const char *text, int count) {
    long value = 0;
    for (int index = 0; index < count; index++) {
        if (text[index] < '0' || text[index] > '9') return -1;
        value = value * 10 + (text[index] - '0');
    }
    return value;
}

int timestamp_milliseconds(const char *text, long long *milliseconds) {
    static const char layout[] = "0000-00-00T00:00:00Z";
    for (int index = 0; index < 20; index++) {
        if (text[index] == '\0' || (layout[index] != '0' && text[index] != layout[index])) return -1;
    }
    if (text[20] != '\0') return -1;
    long year = digits(text, 4), month = digits(text + 5, 2), day = digits(text + 8, 2);
    long hour = digits(text + 11, 2), minute = digits(text + 14, 2), second = digits(text + 17, 2);
    if (year < 0 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
        second < 0 || second > 60)
        return -1;
    /* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
    long y = month <= 2 ? year - 1 : year;
    long era = (y >= 0 ? y : y - 399) / 400;
    long year_of_era = y - era * 400;
    long day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    long day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    long long days = (long long)era * 146097 + day_of_era - 719468;
    *milliseconds = ((days * 24 + hour) * 60 + minute) * 60000LL + second * 1000LL;
    return 0;
}
