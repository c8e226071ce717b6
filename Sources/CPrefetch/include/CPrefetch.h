#ifndef CPREFETCH_H
#define CPREFETCH_H

/// Asks the CPU to bring the cache line at `address` in for reading, into every cache level. A
/// hint: it never faults, whatever the address. Swift cannot name the instruction directly.
static inline void cprefetch_read(const void *address) { __builtin_prefetch(address, 0, 3); }

#endif
