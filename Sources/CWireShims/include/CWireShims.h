#ifndef CWIRESHIMS_H
#define CWIRESHIMS_H
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/types.h>

/// Peer credentials of a connected Unix socket (SO_PEERCRED). Returns 0 or -1 with errno set.
int cwire_peercred(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC (Glibc's Swift module hides accept4).
int cwire_accept_nonblocking(int fd);

/// Returns freed heap memory to the system (malloc_trim(3)); 1 when some was released.
int cwire_release_free_memory(void);

/// The epoll user data of an event as a 64-bit integer (the C union is awkward from Swift).
static inline unsigned long long cwire_epoll_event_data(const struct epoll_event *event) {
    return event->data.u64;
}

/// Builds an epoll event for `events` carrying `data`.
static inline struct epoll_event cwire_epoll_event(unsigned int events, unsigned long long data) {
    struct epoll_event event;
    event.events = events;
    event.data.u64 = data;
    return event;
}
#endif
