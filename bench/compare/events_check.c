/* events-check: the SQL clients' conversions checked against values worked out apart (date -u,
 * exact arithmetic), run by scripts/bench-compare before any workload: a wrong conversion would
 * store other values than ours and go unseen in the figures. Prints nothing and exits 0 when
 * every case holds; otherwise names each case that does not and exits 1. */
#include <stdio.h>
#include <string.h>

#include "events.h"

int main(void) {
    static const struct {
        const char *text;
        int result;
        long long milliseconds;
    } times[] = {
        {"1970-01-01T00:00:00Z", 0, 0LL},
        {"2022-09-19T13:26:22Z", 0, 1663593982000LL},  /* the ingest cases' timestamp */
        {"2024-01-31T00:00:00Z", 0, 1706659200000LL},  /* the catch-up workload's */
        {"2024-02-29T23:59:59Z", 0, 1709251199000LL},  /* a leap day */
        {"2000-03-01T00:00:00Z", 0, 951868800000LL},   /* after a leap century's February */
        {"1969-12-31T23:59:59Z", 0, -1000LL},
        {"2022-09-19T13:26:22", -1, 0},
        {"2022-09-19 13:26:22Z", -1, 0},
        {"2022-13-01T00:00:00Z", -1, 0},
        {"", -1, 0},
    };
    static const struct {
        const char *text;
        int result;
        long long units;
    } quantities[] = {
        {"1.5", 0, 1500000000LL},
        {"0", 0, 0LL},
        {"-2.000000001", 0, -2000000001LL},
        {"0.0000000001", -1, 0},
        {"1e3", -1, 0},
        {".5", -1, 0},
    };
    int failed = 0;
    for (size_t index = 0; index < sizeof times / sizeof times[0]; index++) {
        long long milliseconds = 0;
        int result = timestamp_milliseconds(times[index].text, &milliseconds);
        if (result != times[index].result || (result == 0 && milliseconds != times[index].milliseconds)) {
            fprintf(stderr, "events-check: timestamp_milliseconds(\"%s\") gave %d, %lld; expected %d, %lld\n", times[index].text, result,
                    milliseconds, times[index].result, times[index].milliseconds);
            failed = 1;
        }
    }
    for (size_t index = 0; index < sizeof quantities / sizeof quantities[0]; index++) {
        long long units = 0;
        int result = decimal_units(quantities[index].text, &units);
        if (result != quantities[index].result || (result == 0 && units != quantities[index].units)) {
            fprintf(stderr, "events-check: decimal_units(\"%s\") gave %d, %lld; expected %d, %lld\n", quantities[index].text, result,
                    units, quantities[index].result, quantities[index].units);
            failed = 1;
        }
    }
    return failed;
}
