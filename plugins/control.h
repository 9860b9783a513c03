/*
 * membal's control socket: a Unix stream socket (mode 0600, root only) on
 * which the `membal` command asks for status, holds and releases domains and
 * reserves memory for a VM about to start. One request per connection: one
 * line in, a reply out, then the server closes.
 *
 *   request: a line of at most MB_CONTROL_LINE - 1 bytes, ending in '\n'
 *   reply:   "ok[ text]\n" then any payload, or "error <why>\n"
 *
 * The server is one thread. A peer whose uid is neither 0 nor the daemon's
 * own is refused before its line is read; a peer that sends nothing is cut
 * off after MB_CONTROL_TIMEOUT_S. The handler runs on the server's thread,
 * never on the round's.
 */
#ifndef MEMBAL_CONTROL_H
#define MEMBAL_CONTROL_H

#include "strbuf.h"

#include <sys/types.h>

#define MB_CONTROL_LINE 1024
#define MB_CONTROL_TIMEOUT_S 5

/* Answers one request (NUL-terminated, without '\n') of peer uid into
 * reply, starting with "ok" or "error". */
typedef void (*mb_control_handler_t)(const char *line, uid_t uid,
                                     mb_strbuf_t *reply, void *ud);

typedef struct mb_control mb_control_t;

/* Binds path (a stale socket left by a crash is replaced; a socket that
 * answers, or any other file there, is an error), mode 0600, and starts the
 * thread. NULL with err set on failure. */
mb_control_t *mb_control_start(const char *path, mb_control_handler_t handler,
                               void *ud, char *err, size_t errlen);
/* Stops the thread, removes the socket; ctl may be NULL. */
void mb_control_stop(mb_control_t *ctl);

#endif
