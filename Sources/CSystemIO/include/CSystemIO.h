#ifndef CSYSTEMIO_H
#define CSYSTEMIO_H
#include <stddef.h>
#include <stdint.h>

/// 1 when the CPU has the SSE 4.2 CRC32 instruction (checked once).
int csystemio_has_crc32c_instruction(void);

/// CRC-32C (Castagnoli) of `count` bytes at `bytes`, continuing from `crc` (0 to start), with the
/// CPU's CRC32 instruction. Call only when csystemio_has_crc32c_instruction() is 1.
uint32_t csystemio_crc32c(uint32_t crc, const void *bytes, size_t count);
/// Asks the CPU to bring the cache line at `address` in for writing (a hint; it never faults).
static inline void csystemio_prefetch(const void *address) { __builtin_prefetch(address, 1, 3); }
/// Keeps every store before it ahead of every store after it, for the compiler and the CPU: what
/// a process killed between the two leaves in a shared mapping has the first if it has the second.
static inline void csystemio_store_fence(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
/// `sync_file_range` with WAIT_BEFORE | WRITE | WAIT_AFTER (Glibc declares it only for
/// _GNU_SOURCE): writes the range's dirty pages and waits for them; 0, or -1 with errno.
int csystemio_write_back(int fd, int64_t offset, int64_t count);
#endif
