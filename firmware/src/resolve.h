/* resolve.h - name resolution that never blocks the agent's event loop.
 *
 *   et_resolver *r = et_resolver_create(loop, on_done, ud);
 *   et_resolver_start(r, "collector.example", 5684, 10000);   // 0 = started
 *   ... on_done(ud, 0, &addr, len, "") later, from the loop ...
 *   et_resolver_destroy(r);
 *
 * Why a child process: getaddrinfo() blocks for as long as the resolvers in resolv.conf take
 * to time out (musl: 5 s per try, several tries), which would stall sampling and CoAP
 * retransmissions for that long. musl has no getaddrinfo_a (a glibc extension), the agent is
 * single-threaded by design, and writing our own DNS client would duplicate the libc's
 * /etc/hosts, search-domain and resolv.conf handling. So the lookup runs in a forked child
 * that writes one answer into a pipe the loop watches; a timer SIGKILLs a child that takes
 * longer than the timeout. A numeric address is converted inline (no network, no child).
 * Resolutions are rare (start, after a session failure), so the fork's cost does not matter. */
#ifndef ET_RESOLVE_H
#define ET_RESOLVE_H

#include <stdint.h>
#include <sys/socket.h>

#include "loop.h"

typedef struct et_resolver et_resolver;

/* ok = 0 and the first address (UDP) on success; ok = -1 and a reason in err otherwise.
 * Called from the loop (or from et_resolver_start itself for a numeric host). */
typedef void (*et_resolved_fn)(void *ud, int ok, const struct sockaddr *sa, socklen_t len, const char *err);

et_resolver *et_resolver_create(et_loop *loop, et_resolved_fn done, void *ud);
/* Kills a running child and frees. */
void et_resolver_destroy(et_resolver *r);
/* Starts resolving host:port. 0 = started (done will be called exactly once), -1 = busy or
 * cannot fork/pipe (done is not called). */
int et_resolver_start(et_resolver *r, const char *host, uint16_t port, uint32_t timeout_ms);
int et_resolver_busy(const et_resolver *r);

#endif
