/* Command-line options of the compare clients (options.h). */
#include "options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *option_text(int argc, char **argv, const char *name, const char *fallback) {
    for (int index = 1; index + 1 < argc; index += 2) {
        if (strcmp(argv[index], name) == 0) return argv[index + 1];
    }
    return fallback;
}

long option_count(int argc, char **argv, const char *name, long fallback) {
    const char *text = option_text(argc, argv, name, NULL);
    if (text == NULL && fallback >= 0) return fallback;
    char *end = NULL;
    long value = text != NULL ? strtol(text, &end, 10) : 0;
    if (text == NULL || *end != '\0' || value < 1) {
        fprintf(stderr, "%s: %s takes a positive integer\n", argv[0], name);
        exit(64);
    }
    return value;
}

int option_choice(int argc, char **argv, const char *name, const char *const *choices, const char *fallback) {
    const char *text = option_text(argc, argv, name, fallback);
    for (int index = 0; choices[index] != NULL; index++) {
        if (strcmp(text, choices[index]) == 0) return index;
    }
    fprintf(stderr, "%s: %s takes", argv[0], name);
    for (int index = 0; choices[index] != NULL; index++) fprintf(stderr, "%s %s", index > 0 ? " or" : "", choices[index]);
    fprintf(stderr, ", not %s\n", text);
    exit(64);
}

void options_check(int argc, char **argv, const char *const *known, const char *usage) {
    for (int index = 1; index < argc; index += 2) {
        int found = 0;
        for (const char *const *name = known; *name != NULL; name++) found |= strcmp(argv[index], *name) == 0;
        if (!found || index + 1 >= argc) {
            fprintf(stderr, "%s: unexpected %s\nusage: %s %s\n", argv[0], argv[index], argv[0], usage);
            exit(64);
        }
    }
}
