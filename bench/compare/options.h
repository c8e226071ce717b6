/* Command-line options of the compare clients: "--name value" pairs, nothing else. */
#ifndef COMPARE_OPTIONS_H
#define COMPARE_OPTIONS_H

/* The value of option `name` in argv, or `fallback` when it is absent. */
const char *option_text(int argc, char **argv, const char *name, const char *fallback);

/* The positive integer value of option `name`; exits with status 64 (after saying why) when it
 * is absent without a fallback (fallback < 0) or not a positive integer. */
long option_count(int argc, char **argv, const char *name, long fallback);

/* The position in `choices` (a NULL-ended list) of option `name`'s value, or of `fallback` when it
 * is absent; exits with status 64 (after saying why) when the value is none of them. */
int option_choice(int argc, char **argv, const char *name, const char *const *choices, const char *fallback);

/* Exits with status 64 when argv holds anything but the `known` options (a NULL-ended list) with values. */
void options_check(int argc, char **argv, const char *const *known, const char *usage);

#endif
