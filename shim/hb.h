/*
 * hb.h - the cross-file API of libhbshim.
 *
 * Every function and variable one file of shim/ defines for others, under
 * the heading of the file that defines it, the files in the order of their
 * layers (scripts/layers.py --floors): the core first, then the modes, the
 * interposers last. The data layouts are in hb_types.h, the OS layer
 * (os.c, real.c, proc.c, fmt.c, counters.c) in hb_os.h; both are included
 * here, so a file of shim/ includes hb.h alone. The framed files share
 * frame_int.h, the fault files fault_io.h.
 *
 * Conventions (../STYLE.md):
 *   - internals return 0 / -errno and never touch errno; interposers (the
 *     i_*.c files) convert to -1 + errno at one boundary;
 *   - cross-file names start with hb_, public API with hbshim_;
 *   - each function says which thread may call it: "app thread" (an
 *     application thread inside an interposer), "background thread" (the
 *     shim's own timer thread, thread.c), "any thread", or "constructor"
 *     (the library constructor, single-threaded). "fd pinned": the caller
 *     holds hb_fd_pin on fd, so fd is c's socket for the whole call;
 *   - inline code here calls only files of its own floor or below.
 */
#ifndef HB_H
#define HB_H

#include "hb_types.h"
#include "hb_os.h"

/* ------------------------------------------------------------------ parse.c */

#define HB_MS_PER_S 1000u
#define HB_MS_PER_M 60000u
#define HB_MS_PER_H 3600000u

/* Parse a duration: "250ms", "5s", "1m", "2h" or a bare integer (seconds).
 * Returns 0 and stores milliseconds, -EINVAL on bad syntax, -ERANGE when the
 * value does not fit 32-bit milliseconds. Pure; any thread. */
int hb_parse_duration(const char *s, uint32_t *out_ms);

/* Parse a comma-separated list of peer rules (ADDR:PORT, ADDR/PREFIX:PORT,
 * "*", "*:PORT", IPv6 in brackets: "[::1]:80", "[fd00::/8]:*", port "*").
 * Returns 0 and the count in *n, or -EINVAL / -E2BIG. Pure; any thread. */
int hb_parse_rules(const char *s, struct hb_rule *out, int max, int *n);
/* The same, also telling where it stopped: on failure *bad and *badlen
 * delimit the offending item (for the error line). Pure; any thread. */
int hb_parse_rule_list(const char *s, struct hb_rule *out, int max, int *n, const char **bad,
		       size_t *badlen);

/* Lists in variables (peer rules, fault rules, program names): 1 when s is
 * NULL or only blanks (no item). hb_list_item takes the item at *p up to
 * sep, blanks around it dropped, into [*start, *start + *len) and moves *p
 * past the separator; it returns 1 when a separator followed (another
 * item, maybe empty, must come) and 0 after the last item. Pure. */
int hb_list_blank(const char *s);
int hb_list_item(const char **p, char sep, const char **start, size_t *len);

/* 1 when addr matches one of the rules, else 0. Pure; async-signal-safe. */
int hb_rules_match(const struct hb_rule *rules, int n, const struct sockaddr *sa,
		   socklen_t len);

/* ------------------------------------------------------------------ wheel.c */

/* Hierarchical timer wheel with cascading, 1 ms ticks, intrusive doubly
 * linked lists through hb_conn.wprev/wnext: O(1) add, O(1) delete, per-tick
 * cost independent of the number of pending timers. Single-threaded: owned
 * by the background thread (and by unit tests). */
void hb_wheel_init(struct hb_wheel *w, uint64_t now_ms);
/* Link c to fire at expires (ms); a past time fires at the next advance.
 * c must not be linked. */
void hb_wheel_add(struct hb_wheel *w, struct hb_conn *c, uint64_t expires);
/* Unlink c; c must be linked (c->wlinked). */
void hb_wheel_del(struct hb_wheel *w, struct hb_conn *c);
/* Process ticks up to now, calling fire(c) for every due timer (c is
 * unlinked before the call and may be re-added from inside it). */
void hb_wheel_advance(struct hb_wheel *w, uint64_t now_ms,
		      void (*fire)(struct hb_conn *c, void *arg), void *arg);
/* Earliest tick at which something may fire, or UINT64_MAX when empty.
 * May be early (never late) for timers on the higher levels. */
uint64_t hb_wheel_next(const struct hb_wheel *w);

/* ------------------------------------------------------------------ fault.c */

/* Parse a whole HBSHIM_FAULTS value into out[0..max): 0 and the count in
 * *n, or -EINVAL / -E2BIG with *bad, *badlen delimiting the offending rule
 * (for the error line). Pure; any thread. */
int hb_fault_parse(const char *s, struct hb_fault *out, int max, int *n, const char **bad,
		   size_t *badlen);
/* One rule s[0..n) (no ';') into *f: 0 or -EINVAL; index names it when it
 * has no name=. Pure; any thread (the background thread's control step too). */
int hb_fault_parse_one(const char *s, size_t n, struct hb_fault *f, int index);
/* The name of an HB_FA_* action, and of an errno value the errno fault
 * accepts ("ECONNRESET"), or NULL. Pure. */
const char *hb_fault_action_name(int action);
const char *hb_fault_errno_name(int err);

/* ------------------------------------------------------------------ outfile.c */

/* The shim's own output files and standard error: never block, never raise
 * a signal, create 0600, never follow a planted symlink, never leave an fd
 * open in a fork child (see outfile.c). Any thread, async-signal-safe. */
enum { HB_OUT_LOG, HB_OUT_EVENTS, HB_OUT_STATS };
/* Append line s[0..n) to path (kind: which variable named it). 0 when
 * written whole, -errno when dropped (the caller counts it). */
int hb_out_append(int kind, const char *path, const char *s, size_t n);
/* Write s to fd 2: 0 written, 1 not written by design (fd 2 is a TCP/IP
 * socket: the peer's stream), -errno dropped. */
int hb_out_stderr(const char *s, size_t n);
/* 1 when path is a symlink planted in a sticky world-writable directory,
 * which the shim does not follow (hb_out_append then fails with -EACCES). */
int hb_out_refused(int kind, const char *path);
/* After a refusal: 1, once per kind, with the warning line (no newline)
 * for path in b, which the caller writes; else 0. */
int hb_out_take_warning(int kind, const char *path, struct hb_buf *b);
/* Create "PATH.tmp.RANDOM" exclusively in tmp[cap], mode 0600: the fd and
 * *slot, or -errno. Close it with hb_out_close_tmp. */
long hb_out_create_tmp(const char *path, char *tmp, size_t cap, int *slot);
void hb_out_close_tmp(int slot, long fd);
/* Note what fd 2 is at load. Constructor, before anything is logged. */
void hb_out_init(void);
/* pthread_atfork handlers (registered by init.c). */
void hb_out_atfork_prepare(void);
void hb_out_atfork_parent(void);
void hb_out_atfork_child(void);

/* ------------------------------------------------------------------ epollset.c */

/* Remember an epoll set a framed socket was added to (note); take fd (a
 * framed socket about to be closed while the shim keeps a duplicate) out of
 * every such set (detach): 0, or -1 when those sets are not all known. Any
 * thread, async-signal-safe. */
void hb_epoll_note(int epfd);
int hb_epoll_detach(int fd);

/* ------------------------------------------------------------------ conn.c */

/* Allocate a zeroed connection with refs = 0 and no fds, or NULL (pool
 * exhausted or mmap failed: the caller passes through untracked).
 * Any thread; lock-free. */
struct hb_conn *hb_conn_alloc(void);
/* Return a connection to the pool. Background thread only (the single
 * reclaimer), or any thread for a connection never published. */
void hb_conn_free(struct hb_conn *c);
/* The connection at pool index + 1 (c->self), or NULL for 0 or an index
 * never allocated. Any thread; the slot may be free or reused: compare
 * gen. */
struct hb_conn *hb_conn_at(uint32_t idx1);
/* Push onto the inbox / reap stacks (any thread, lock-free) and take the
 * whole stack (background thread). */
void hb_conn_push_inbox(struct hb_conn *c);
void hb_conn_push_reap(struct hb_conn *c);
/* Called after every push onto the reap stack, so the reclaimer (the
 * background thread) learns of it; registered once from above (init.c),
 * which keeps conn.c and the fd table below the thread. Any thread;
 * fn must be async-signal-safe. */
void hb_conn_on_reap(void (*fn)(void));
/* The reclaimer puts back a connection it cannot free yet (a thread is
 * still inside a call on it): pushed without the hook, so the background
 * thread does not wake itself into a busy loop; it looks again at its next
 * wakeup. Background thread only. */
void hb_conn_retry_reap(struct hb_conn *c);
struct hb_conn *hb_conn_take_inbox(void);
struct hb_conn *hb_conn_take_reap(void);
/* Number of connections in use (stats). Any thread; a relaxed snapshot. */
uint32_t hb_conn_in_use(void);

/* ------------------------------------------------------------------ inherit_parse.c */

/* Parse the entry at s (up to ';' or the end) into *e: 0, or -EINVAL when
 * it is malformed or holds a value no connection of ours can have (e is
 * then zeroed). *next is set in both cases to the next entry (past the
 * ';') or to the terminating NUL. Pure; any thread. */
int hb_inherit_parse(const char *s, struct hb_inherit_ent *e, const char **next);

/* ------------------------------------------------------------------ config.c */

/*
 * 1 when the configuration lets the program called name act (name: the
 * basename of its argv[0]): name is in c->only_cmds (or that list is empty)
 * and not in c->skip_cmds. Names compare exactly, byte for byte; an empty
 * name is in no list. Pure; any thread.
 */
int hb_scope_admits(const struct hb_config *c, const char *name);

/* Fill *c from the variables returned by get(name) (getenv in the library,
 * the wrapper's own table in tests). Unset variables take defaults. On an
 * invalid value returns -EINVAL and writes one line naming the variable and
 * the accepted forms into err (no trailing newline); *c is then unusable.
 * Pure except for get(); no allocation. */
int hb_config_parse(struct hb_config *c, const char *(*get)(const char *name), char *err,
		    size_t errlen);
extern const struct hb_option hb_options[];
extern const int hb_noptions;

/* The process-wide configuration (valid after hb_init()). */
extern struct hb_config hb_cfg;

/* ------------------------------------------------------------------ fdtable.c */

extern _Atomic(struct hb_fdent *) hb_fd_chunks[HB_FD_MAX >> HB_FD_CHUNK_SHIFT];

/* The table's entry for fd as it stands (NULL if none): for the paths
 * that change the table, which must see the owner's entries. */
static inline struct hb_conn *hb_fd_conn_raw(int fd)
{
	if (HB_UNLIKELY((unsigned)fd >= HB_FD_MAX))
		return NULL;
	struct hb_fdent *ch = hb_load_acquire(&hb_fd_chunks[(unsigned)fd >> HB_FD_CHUNK_SHIFT]);
	if (!ch)
		return NULL;
	return hb_load_acquire(&ch[(unsigned)fd & (HB_FD_CHUNK - 1)].conn);
}

/* c, the raw entry for fd, or NULL when fd is provably not its socket in
 * a vfork child (the fast paths of i_io.c look up raw and vet in their
 * slow part: no stack frame for an untracked fd). */
static inline struct hb_conn *hb_fd_conn_vet(int fd, struct hb_conn *c)
{
	if (HB_UNLIKELY(c && hb_vfork_mark) && !hb_vfork_same_socket(fd, c->cookie))
		return NULL;
	return c;
}

/* The connection behind fd, or NULL (also when fd is provably not the
 * connection's socket in a vfork child). */
static inline struct hb_conn *hb_fd_conn(int fd)
{
	return hb_fd_conn_vet(fd, hb_fd_conn_raw(fd));
}

/* Whether fd still refers to c. A close from another application thread
 * does not wait for a call blocked in the kernel (the kernel's close does
 * not either), so once a blocking system call returned, the number may
 * have been closed and reused for another file: an application thread
 * looks before it makes another system call on fd, and a framed call then
 * ends with what it has, or EBADF. Any thread holding a use count of c
 * (which keeps c itself alive). */
static inline int hb_fd_is(const struct hb_conn *c, int fd)
{
	return hb_fd_conn(fd) == c;
}

/* Entry for fd, installing its chunk if create (mmap, CAS). NULL when fd is
 * out of range or memory is short. Any thread. */
struct hb_fdent *hb_fd_entry(int fd, int create);

/* Attach conn to a freshly created fd (socket, accept, dup). A stale ACTIVE
 * entry left by a close the shim did not see is purged first. Takes one
 * reference on conn on success. Returns 0, or -ENOMEM (untracked). Any app
 * thread. */
int hb_fd_install(int fd, struct hb_conn *c);

/* Close protocol, first half: mark fd CLOSING, wait until the background
 * thread left it, clear it and drop its reference on the connection.
 * Returns 1 if fd was tracked, 0 if not. The caller then calls the real
 * close (or dup2...). Any app thread, async-signal-safe. */
int hb_fd_forget(int fd);

/* Split form of hb_fd_forget for dup2/dup3, whose real call may fail and
 * then must leave the target fd as it was: begin marks CLOSING and waits;
 * end(ok=1) clears, end(ok=0) restores ACTIVE. begin returns 1 when fd was
 * tracked (end must then be called) and 0 otherwise. App thread. */
int hb_fd_forget_begin(int fd);
void hb_fd_forget_end(int fd, int ok);

/* Forget every tracked fd in [lo, hi] (close_range, closefrom), as
 * hb_fd_forget does one. App thread. */
void hb_fd_forget_range(unsigned lo, unsigned hi);

/* Background thread: pin the fd of conn for a shim-originated operation.
 * Succeeds only if some fd of conn is ACTIVE with the recorded generation
 * and still is the same socket (SO_COOKIE); returns that fd and stores the
 * entry to release in *ent; -1 if none (the connection is gone or lost). */
int hb_fd_pin(struct hb_conn *c, struct hb_fdent **ent);
void hb_fd_unpin(struct hb_fdent *ent);

/* Child side of fork: clear busy marks left by the parent's background
 * thread (which does not exist in the child). */
void hb_fd_after_fork_child(void);

/* Call fn for every ACTIVE entry, in fd order. Nothing is pinned: an entry
 * may be forgotten while fn runs (fn checks what it relies on), and entries
 * added meanwhile may be missed. Any thread; fork handlers. */
void hb_fd_foreach(void (*fn)(int fd, struct hb_conn *c, void *arg), void *arg);

/* ------------------------------------------------------------------ log.c */

extern int hb_log_level; /* copy of hb_cfg.log_level, read without locks */
/* Format one line (hb_buf_fmt's subset) with the level and pid, and append
 * it to HBSHIM_LOG_FILE or stderr, rate-capped; a line logged from inside
 * logging is dropped. Any thread, async-signal-safe. Use hb_log. */
void hb_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The level test happens before the arguments are evaluated. */
#define hb_log(level, ...)                                    \
	do {                                                  \
		if (HB_UNLIKELY((level) <= hb_log_level))     \
			hb_log_write((level), __VA_ARGS__);   \
	} while (0)
/* Print one line to stderr whatever the level (configuration errors),
 * through hb_out_stderr. Any thread. */
void hb_log_stderr(const char *line);
/* After outfile.c refused path (kind HB_OUT_*): its one warning, if not
 * written yet; on stderr for the log file itself, else as a warn line.
 * Any thread. */
void hb_log_refused(int kind, const char *path);

/* ------------------------------------------------------------------ epollmap.c */

/* (epfd, epoll_data) -> fd for the epoll_wait filter. ctl records a
 * successful epoll_ctl (c: the tracked connection behind fd, or NULL for an
 * fd the shim does not track, reported once hb_epmap_used is set). find
 * fills *out and returns 1 when exactly one recorded registration has that
 * data in that set and nothing marked it ambiguous; out->verified says
 * whether the kernel's list of the set confirmed it. check_set reads that
 * list (/proc/self/fdinfo/EPFD) and confirms every unconfirmed entry of
 * the set or marks it ambiguous: 0, or -EAGAIN when another reading runs
 * or paused the readings (in proportion to its size), -E2BIG for a list
 * too long to read, -errno. App threads; no call holds a lock across a
 * system call. */
struct epoll_event;
extern _Atomic int hb_epmap_used;
void hb_epmap_ctl(struct hb_conn *c, int epfd, int op, int fd, const struct epoll_event *ev);
int hb_epmap_find(int epfd, uint64_t data, struct hb_epreg *out);
int hb_epmap_check_set(int epfd);

/* ------------------------------------------------------------------ events.c */

#define HB_EV_STR(k, v) ((struct hb_ev_field){ .key = (k), .str = (v) })
#define HB_EV_NUM(k, v) ((struct hb_ev_field){ .key = (k), .num = (uint64_t)(v) })
/* hb_event_conn's last two arguments from a list of HB_EV_STR/HB_EV_NUM. */
#define HB_EV_FIELDS(...)                                                      \
	(const struct hb_ev_field[]){ __VA_ARGS__ },                           \
		(int)(sizeof((const struct hb_ev_field[]){ __VA_ARGS__ }) /    \
		      sizeof(struct hb_ev_field))
/* The event builder: append one JSON line to HBSHIM_EVENTS, the common
 * fields (time, event name, pid, fd, local, peer, mode) then f[0..n) in
 * order. peer, when given, is the peer address (a connect still in
 * progress has no getpeername yet); NULL asks the socket. No-op when events
 * are off. Any thread, async-signal-safe. */
void hb_event_conn(const char *name, int fd, const struct hb_conn *c,
		   const struct sockaddr *peer, socklen_t peerlen, const struct hb_ev_field *f,
		   int n);
static inline int hb_events_on(void) { return hb_cfg.events_file[0] != 0; }

/* ------------------------------------------------------------------ keepalive.c */

/* Pure derivation; see DESIGN.md "Keepalive mode". */
void hb_ka_derive(uint32_t interval_ms, uint32_t timeout_ms, struct hb_ka *out);
extern struct hb_ka hb_ka_cfg; /* derived once at init */
/* Keepalive settings used as a backstop on framed connections
 * (keepalive.c, filled by hb_ka_init). */
extern struct hb_ka hb_ka_frame_cfg;
/* Derive hb_ka_cfg, and hb_ka_frame_cfg for framed connections (whose kernel
 * keepalive is only a backstop and must never fire before the heartbeat
 * timeout: 2 x timeout), from the configuration. Constructor only. */
void hb_ka_init(uint32_t interval_ms, uint32_t timeout_ms);
/* Apply the timing options (not SO_KEEPALIVE itself) to fd, skipping what
 * the application set. App thread right after connect/accept. */
void hb_ka_apply(int fd, struct hb_conn *c);
/* Switch SO_KEEPALIVE on unless the app chose. Background thread, pinned. */
void hb_ka_arm(int fd, struct hb_conn *c);
/* The peer's receive window (keepalive.c): switch our TCP_USER_TIMEOUT off
 * while data waits to be sent or acknowledged, on again once all is; uto_ms
 * is ours for the connection's mode, now_ms the monotonic time of x;
 * since_ms: data found waiting that was not at the last look was sent at or
 * after it (0: now). A peer that answered nothing for HBSHIM_TIMEOUT while
 * owed an answer is dead: -1, and the caller declares it so (ETIMEDOUT,
 * reason "write"). Background thread, fd pinned. Returns 1 while data
 * waits (look again within an interval), else 0. */
int hb_ka_window(struct hb_conn *c, int fd, const struct hb_tcp_info *x, unsigned uto_ms,
		 uint64_t now_ms, uint64_t since_ms);
/* The application wrote on a keepalive-mode connection: have its window
 * looked at (one flag and its time, once per look; any thread). */
static inline void hb_ka_note_tx(struct hb_conn *c)
{
	if (HB_UNLIKELY(!(hb_load_relaxed(&c->flags) & HB_CF_TXW))) {
		hb_store_relaxed(&c->ka_txw_at, (uint32_t)hb_os_now_ms());
		hb_or_acq_rel(&c->flags, HB_CF_TXW);
	}
}

/* ------------------------------------------------------------------ stats.c */

/* Render the Prometheus text exposition of the counters into b. Any
 * thread; no allocation. */
void hb_stats_render(struct hb_buf *b);
/* Write HBSHIM_STATS atomically (tmp + rename). Any thread. */
void hb_stats_flush(void);

/* ------------------------------------------------------------------ deadline.c */

/* The policy of why, NULL when why is no reason. Pure. */
const struct hb_dead_policy *hb_dead_policy(enum hb_dead_reason why);
/* Declare c dead for why after silent_ms of silence: the one path. Once per
 * connection (later calls return at once): sets c->dead to the reason's
 * errno, shuts fd down (never closes it) so blocked calls return, unless
 * the kernel ended it; counts, writes the "dead" event and logs. Any thread,
 * with c pinned on fd (the background thread) or fd the caller's own
 * (an application call on it). */
void hb_conn_declare_dead(struct hb_conn *c, int fd, enum hb_dead_reason why,
			  uint64_t silent_ms);
/* A call on fd failed ETIMEDOUT: the kernel gave up on the peer. Declares
 * it dead (HB_DEAD_KEEPALIVE, the silence TCP_INFO reports). App thread. */
void hb_conn_kernel_timed_out(struct hb_conn *c, int fd);

/* next, or c's connect deadline when HBSHIM_CONNECT_TIMEOUT is set and it
 * comes first. Pure (reads c->opened_ms and the config). */
uint64_t hb_connect_due(const struct hb_conn *c, uint64_t next);
/* HBSHIM_CONNECT_TIMEOUT for a non-blocking connect still in SYN_SENT:
 * when expired, dissolve the attempt (the application's poll wakes; its
 * SO_ERROR reads ETIMEDOUT through HB_CF_CONN_EXPIRED), write the deadline
 * event and return 1. Background thread, fd pinned. */
int hb_connect_expired(struct hb_conn *c, int fd, uint64_t now);
/* A blocking connect bounded by HBSHIM_CONNECT_TIMEOUT: next_connect made
 * non-blocking, a poll, the blocking flag restored; at the deadline the
 * attempt is dissolved, the event written and ETIMEDOUT returned. A
 * non-blocking socket goes straight to next_connect. Returns like connect().
 * App thread, inside the connect interposer. */
int hb_connect_bounded(int fd, struct hb_conn *c, const struct sockaddr *sa, socklen_t len,
		       hb_connect_fn *next_connect);
/* The silence the idle deadline measures from TCP_INFO: the last data either
 * way, at most since opened_ms. Pure. */
uint64_t hb_idle_silence(const struct hb_ti *ti, uint64_t now, uint64_t opened_ms);
/* The idle deadline of a keepalive-mode connection (HBSHIM_IDLE_TIMEOUT
 * set): fires it when due (event, notice, dead) and returns 0, returns 0
 * when the connection is closing, else when to look again. Background
 * thread, fd pinned. */
uint64_t hb_idle_check(struct hb_conn *c, int fd, uint64_t now, hb_notice_fn *notice);
/* The idle deadline of a framed connection whose tick asked to run again at
 * next (0: not again): next, the idle deadline when it comes first, or 0
 * after firing it (from the last application byte). Background thread, fd
 * pinned. */
uint64_t hb_idle_frame(struct hb_conn *c, int fd, uint64_t now, uint64_t next,
		       hb_notice_fn *notice);

/* ------------------------------------------------------------------ fault_io.c */

/* Fault injection at run time (HBSHIM_FAULTS). Nothing here runs unless
 * rules are configured: the interposers test c->fault (one atomic load).
 * All functions: app threads, return 0 / count or -errno. The
 * rules themselves are hb_cfg.faults (fault.c). */
/* The undisturbed call below the faults (framed or raw), count or -errno. */
typedef long (*hb_fault_next_fn)(struct hb_conn *c, int fd, struct msghdr *m, int flags);
/* Application receive / send through the bound rules. *injected is set
 * when the result is the fault's own (not the kernel's), so the caller
 * does not take it for a dead peer. */
long hb_fault_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags, hb_fault_next_fn next,
		   int *injected);
long hb_fault_send(struct hb_conn *c, int fd, const struct msghdr *m, int flags,
		   hb_fault_next_fn next, int *injected);
/* Live control: rules switched off and triggered by name. Defined here,
 * written by fault_ctl.c's control step (background thread), read by the
 * paths above. */
extern _Atomic uint8_t hb_fault_off[HB_MAX_FAULTS];
extern _Atomic uint32_t hb_fault_kick[HB_MAX_FAULTS];
/* The names of the rules bound to a connection (st: hb_fault_of(c), not
 * NULL), comma-separated, into out. Any thread (the control step). */
void hb_fault_rule_names(struct hb_fstate *st, struct hb_buf *out);
/* The fault rules bound to c, NULL when none (the usual case). Any thread. */
static inline struct hb_fstate *hb_fault_of(struct hb_conn *c)
{
	return hb_load_relaxed(&c->fault);
}

/* ------------------------------------------------------------------ fault_connect.c */

/* Connect faults, before the real connect: 0 to go on (after a "delay"
 * slept, or with *sa replaced by a private loopback address: one that never
 * answers for "timeout", a closed port for "refuse"), 1 to go on and report
 * a connect that completes at once as EINPROGRESS (a non-blocking connect
 * under "delay": in progress until the delay is over), or -errno to fail
 * the connect with (errno, EALREADY while a delay is on). App thread,
 * inside connect. */
int hb_fault_connect(int fd, struct hb_conn *c, const struct sockaddr **sa, socklen_t *len);
/* Bind the rules matching this connection (side, peer) to c (c->fault,
 * once). App thread, at connect or accept, before c is used for I/O. */
void hb_fault_bind(int fd, struct hb_conn *c, const struct sockaddr *peer, socklen_t peerlen,
		   int accepted);

/* ------------------------------------------------------------------ fault_poll.c */

/* poll/ppoll and select/pselect on a process with rules: a socket whose
 * data is held back (latency, bandwidth, hang) is not reported readable
 * until its release; the wait is cut at that time (and at a timed
 * trigger) and made again. inner is the interposer's own call; the result
 * is in inner's convention. App thread. */
int hb_fault_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
		   int (*inner)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *));
int hb_fault_pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
		     const sigset_t *mask,
		     int (*inner)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
				  const sigset_t *));
/* epoll_wait and kin on a process with rules: reports of what is held
 * back are withdrawn and their registrations parked until the release
 * (fault_poll.c). inner waits at most ns (-1: no timeout). App thread. */
int hb_fault_epoll(int epfd, struct epoll_event *evs, int max, int64_t timeout_ns,
		   int (*inner)(int, struct epoll_event *, int, int64_t, void *), void *arg);
/* Around the application's epoll_ctl in a process with rules: its
 * registration of (epfd, fd) replaces a parked one, and is recorded (ok:
 * the call succeeded). begin returns what end takes as locked. App thread,
 * inside epoll_ctl. */
int hb_fault_epoll_ctl_begin(int epfd, int fd);
void hb_fault_epoll_ctl_end(int locked, int ok, struct hb_conn *c, int epfd, int op, int fd,
			    const struct epoll_event *ev);
/* A hang rule holds c now: its heartbeats stop too. Background thread. */
int hb_fault_hung(struct hb_conn *c);

/* ------------------------------------------------------------------ fault_ctl.c */

/* Make the HBSHIM_CONTROL listener (a UNIX socket, mode 0600, same-user
 * peers only; no thread): 0, or -1 with a warning when there is none.
 * Constructor, after the configuration. */
int hb_fault_ctl_start(void);
/* Serve the listener a bounded step: accept, read, answer what is ready,
 * never waiting; nothing in a forked child of the process that made it.
 * Background thread (registered with hb_thread_set_periodic_step). */
void hb_fault_ctl_step(uint64_t now);
/* One control command line into out; returns 0 (ok) or -EINVAL. Any
 * thread (the background thread; unit tests). */
int hb_fault_ctl_exec(const char *cmd, struct hb_buf *out);

/* ------------------------------------------------------------------ thread.c */

/* Register the framed files' steps (struct hb_frame_ops, hb_types.h); ops
 * must live for ever. Constructor, before any connection is scheduled. */
void hb_thread_set_frame_ops(const struct hb_frame_ops *ops);
/* Have the background thread call step(now) every every_ms (its sleep is
 * capped to that); step must never block. One step per process; start the thread with hb_thread_ensure for
 * it to run before the first connection. Constructor. */
void hb_thread_set_periodic_step(void (*step)(uint64_t now), uint32_t every_ms);
/* Hand c to the background thread (starting it on first use). Any app
 * thread; c must be installed. Never blocks. */
void hb_thread_schedule(struct hb_conn *c);
/* A scheduled connection's next step is due now (a deadline the background
 * thread did not know of when it last scheduled it). Any thread. */
void hb_thread_poke(struct hb_conn *c);
/* Start the background thread if this process has none yet (a fork child
 * that uses an inherited connection; the thread then rebuilds its wheel
 * from the fd table). App thread. */
void hb_thread_ensure(void);
/* Returns once the background thread, if one was started, runs (at most a
 * second). Until then glibc counts it as being created, and its
 * all-threads setuid/setgroups waits for such a thread: a child made by a
 * raw clone copies that list, where the thread never runs, and would wait
 * forever. Before a raw clone (i_exec.c). */
void hb_thread_wait_begun(void);
/* In the child of a raw clone (no fork handlers ran) that found it has
 * memory of its own: what the fork child handlers do (connections marked
 * INHERITED and SHARED, no background thread yet). own_files: the child
 * has an fd table of its own (no CLONE_FILES), so the lingering duplicates
 * are its copies to close; else they leave its table unclosed.
 * Single-threaded. */
void hb_thread_after_clone(int own_files);
/* Wake the background thread (reap pressure). Async-signal-safe. */
void hb_thread_wake(void);
/* The application changed a per-thread credential of its own thread
 * (capset, PR_SET_KEEPCAPS, PR_SET_SECUREBITS): make system call nr with
 * these arguments in the background thread too, and wait for it (at most
 * a second). Its result, 0 when there is no background thread (one started
 * later copies its creator), -EAGAIN when it did not answer. App thread. */
long hb_thread_mirror(long nr, long a0, long a1, long a2, long a3);

/* ------------------------------------------------------------------ frame.c */

/* Set (never cleared) once some connection of this process is framed or
 * negotiating: paths that only matter then (SCM_RIGHTS passing, the exit
 * wait) test it first. Any thread, relaxed. */
extern _Atomic int hb_frame_seen;
/* Send a notice frame (reason HB_NR_*) if our direction is framed and at a
 * frame boundary; never blocks, sends nothing when another thread holds the
 * send side. Background thread (hb_frame_ops.notice), fd pinned. */
void hb_frame_notice(struct hb_conn *c, int fd, uint8_t reason, uint32_t silent_ms);

/* ------------------------------------------------------------------ share.c */

/* pthread_atfork handlers: mark framed connections shared in the parent
 * (prepare) and inherited in the child, where they stay quiet until used.
 * Through hb_frame_ops. */
void hb_frame_atfork_prepare(void);
void hb_frame_atfork_child(void);
/* Another process holds c now (fork, vfork, posix_spawn): this one leaves
 * the stream alone for a moment, and its close touches nothing until it
 * uses the connection again. Any thread; now is hb_os_now_ms(). */
void hb_frame_mark_shared(struct hb_conn *c, uint64_t now);

/* ------------------------------------------------------------------ negotiate.c */

/* A frame rule matched this outgoing connection: frame our direction (hello
 * first, sent now when established, else queued), detect the peer's. App
 * thread, right after connect returned 0 or EINPROGRESS. */
void hb_frame_client(int fd, struct hb_conn *c, int established);
/* An accepted connection under HBSHIM_ACCEPT=auto: detect the client's
 * hello, frame our direction only after it arrived. App thread, before the
 * connection is published (accept). */
void hb_frame_server(int fd, struct hb_conn *c);
/* After hb_frame_server and the accept's bookkeeping: decide at once when
 * the client's hello is already there, so it never wakes the application
 * on its own. App thread, inside accept. */
void hb_frame_accepted(int fd, struct hb_conn *c);
/* The application saw its non-blocking connect complete (SO_ERROR 0): send
 * our queued hello unless another thread holds the send side. App thread. */
void hb_frame_connected(struct hb_conn *c, int fd);

/* ------------------------------------------------------------------ downgrade.c */

/* The record of connections downgraded by a process of this fork family:
 * a small shared mapping made at start-up, inherited by fork (not exec).
 * publish adds cookie (a ring: the oldest goes when full); published says
 * whether it is there. Any thread, lock-free; no-ops without the mapping. */
void hb_dg_publish(uint64_t cookie);
int hb_dg_published(uint64_t cookie);
/* Decode fd's framed direction from state rx with read() alone until the
 * peer's downgrade frame, then pass through: for a process that stepped
 * aside (seccomp). 0 or -ENOSPC. App thread, before the filter. */
int hb_dg_leave_reader(int fd, const struct hb_rx *rx);
/* The name of a downgrade reason (HB_DR_*) for events and logs. Pure. */
const char *hb_dg_reason_name(uint8_t reason);

/* ------------------------------------------------------------------ inherit.c */

/* Write "HBSHIM_INHERIT=..." describing every framed fd that survives exec
 * into out; returns its length, or 0 when there is none (or it does not
 * fit). posix_spawn passes its file actions' dup2 {fd, newfd} pairs in
 * dups (the connections handed over are marked shared); exec passes NULL.
 * Any thread; no allocation. */
size_t hb_inherit_export(char *out, size_t cap, const int (*dups)[2], int ndups);
/* Adopt the connections described by the value of HBSHIM_INHERIT; returns
 * how many. An entry that is malformed, inconsistent or does not name a
 * TCP socket of that cookie here is ignored with a warning. Constructor
 * only. */
int hb_inherit_import(const char *s);

/* ------------------------------------------------------------------ frame_rx.c */

/* Application receive on a framed (or negotiating) connection: the
 * application byte count or -errno. App thread. */
long hb_frame_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags);

/* ------------------------------------------------------------------ frame_tx.c */

/* Application send on a framed (or negotiating) connection: the
 * application byte count or -errno. App thread. */
long hb_frame_send(struct hb_conn *c, int fd, const struct msghdr *m, int flags);
/* The application calls shutdown(how): a half-close frame before our FIN
 * when it keeps reading; the read side's shutdown is held back while our
 * data is unacknowledged. Returns the how for the kernel now, or -1 for
 * nothing now. App thread. */
int hb_frame_shutdown(struct hb_conn *c, int fd, int how);

/* ------------------------------------------------------------------ frame_drain.c */

/* For the poll family: may the application read now? Control frames at the
 * head are consumed first. 1 when application bytes (or the end of the
 * stream, or an error) are there, 0 when only control frames were; 1 in
 * any doubt (a readiness report is never withheld wrongly). App thread. */
int hb_frame_app_readable(struct hb_conn *c, int fd);
/* The last fd of a framed connection is being closed: drop control frames
 * waiting unread so that the close sends a FIN, not a reset. App thread. */
void hb_frame_close(struct hb_conn *c, int fd);
/* FIONREAD on a framed connection: application bytes readable into *out;
 * 0 or -errno. App thread. */
int hb_frame_inq(struct hb_conn *c, int fd, int *out);

/* ------------------------------------------------------------------ frame_xfer.c */

/* Zero-copy sends and receives (sendfile, splice): the header goes first,
 * then xfer(ctx, n) makes the real call for at most n payload bytes and
 * returns its count or -errno. avail bounds what the source can deliver
 * (bytes left in a regular file, bytes in a pipe), so a frame never promises
 * more than will come; nb: the call must not block. The application byte
 * count or -errno. App thread. */
long hb_frame_xfer_out(struct hb_conn *c, int fd, size_t len, size_t avail, int nb,
		       long (*xfer)(void *ctx, size_t len), void *ctx);
long hb_frame_xfer_in(struct hb_conn *c, int fd, size_t len, int nb,
		      long (*xfer)(void *ctx, size_t len), void *ctx);

/* ------------------------------------------------------------------ leave.c */

/* Set up the fork family's records (downgraded connections, hb_dg_publish;
 * peer hellos taken, share.c) and the SCM_RIGHTS watch on the next
 * sendmsg. Constructor, after hb_real_bind. */
void hb_dg_init(void);
/* This process is about to stop framing c (reason HB_DR_*: a seccomp filter
 * comes next). Sends our downgrade frame with the request flag when the
 * peer can take it, and hands the peer's framed direction to the leaving
 * reader (downgrade.c). Application thread, before the filter. */
void hb_frame_leave(struct hb_conn *c, int fd, uint8_t reason);
/* Before c (on fd: by cookie, a vfork child's own number will do) is
 * handed to another process: a connection whose peer's direction is still
 * undecided, and which this process may read, takes the peer's hello
 * first; a client's waits for it, at most a second per hand-over
 * (HBSHIM_TIMEOUT if shorter), an accepted one never; what stays
 * undecided goes over with no hello mark. hb_frame_handover_all does it
 * for every tracked connection in one wait; hb_frame_fork_prepare is the
 * fork's prepare handler (then hb_frame_atfork_prepare). App thread
 * (a vfork child's too), or a fork's prepare handler. */
void hb_frame_handover(struct hb_conn *c, int fd);
void hb_frame_handover_all(void);
void hb_frame_fork_prepare(void);
/* The application sends fd to another process (SCM_RIGHTS): leave framing
 * both ways first (our downgrade frame with the request, then the peer's
 * frames up to its answer, within HBSHIM_TIMEOUT), so that the receiver
 * gets a raw stream. Application thread, before the real sendmsg. */
void hb_frame_pass(struct hb_conn *c, int fd);

/* ------------------------------------------------------------------ linger.c */

/* close() of the last fd of a framed connection: keep the socket open on
 * a private, close-on-exec duplicate for a short while after the FIN, to
 * read and drop heartbeats the peer sent before it saw the FIN (an orphaned
 * socket would answer them with a reset that destroys our unsent data).
 * Returns 1 when the connection now lingers (the caller still closes fd).
 * App thread, inside close. */
int hb_frame_linger(struct hb_conn *c, int fd);
/* Background step of a lingering connection: returns the next due time or
 * 0 when the private fd should now be closed. Background thread
 * (hb_frame_ops.linger_tick), fd pinned. */
uint64_t hb_frame_linger_tick(struct hb_conn *c, int fd, uint64_t now);
/* Library destructor: wait (bounded by the timeout) until framed
 * connections have their queued data acknowledged. Exiting thread. */
void hb_frame_at_exit(void);
/* Close every lingering private fd: the fork child's copies (through
 * hb_frame_ops.linger_drop_all). Single-threaded fork child. */
void hb_frame_linger_drop_all(void);

/* ------------------------------------------------------------------ tick.c */

/* Background step for a framed connection: hello, heartbeat, liveness,
 * draining control frames. Returns the next due time (ms) or 0 when the
 * connection needs no more timers. late: how far past its due time this
 * tick runs (a starved thread). Background thread, fd pinned. */
uint64_t hb_frame_tick(struct hb_conn *c, int fd, uint64_t now, uint64_t late);
/* The framed files' entry points for the background thread, registered by
 * init.c with hb_thread_set_frame_ops. */
extern const struct hb_frame_ops hb_frame_ops;

/* ------------------------------------------------------------------ conn_io.c */

/* A tracked connection's side of a data call. App threads; the ssize_t
 * results are in libc's convention (-1 and errno). */
/* The errno the shim declared c dead with, 0 when alive (or when fd turns
 * out to be another file now: c is then marked lost). Before a call. */
int hb_io_dead_errno(struct hb_conn *c, int fd);
/* The application's receive / send on c when the shim makes the call (c
 * framed, or with fault rules), m the application's (valid as the kernel
 * would require): the dead check, the call, the result. */
ssize_t hb_io_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags);
ssize_t hb_io_send(struct hb_conn *c, int fd, const struct msghdr *m, int flags);
/* The result r (libc's convention, errno as the call left it) of the
 * application's own receive or send on c, with the connection's verdicts
 * applied. want: the bytes asked for (0 for an empty request); app_flags:
 * the application's send flags (MSG_NOSIGNAL: no SIGPIPE). */
ssize_t hb_io_rx_done(struct hb_conn *c, int fd, ssize_t r, size_t want);
ssize_t hb_io_tx_done(struct hb_conn *c, int fd, ssize_t r, int app_flags);
/* The same for a result r of the framed paths (count or -errno). */
ssize_t hb_io_frame_rx(struct hb_conn *c, int fd, long r, size_t want);
ssize_t hb_io_frame_tx(struct hb_conn *c, int fd, long r, int app_flags);

/* ------------------------------------------------------------------ i_stdio.c */

/* After the import: stdin/stdout/stderr on an inherited framed fd go
 * through our read and write. Constructor. */
void hb_stdio_adopt(void);
/* fclose(fp): 1 if fp was adopted (now released), else 0. App thread,
 * inside fclose. */
int hb_stdio_release(void *fp);
/* Flush the adopted output streams. Destructor, before the framed exit
 * wait. */
void hb_stdio_flush(void);

/* ------------------------------------------------------------------ i_fdopen.c */

/* Flush our fdopen output streams no other thread holds. Destructor,
 * before the framed exit wait. */
void hb_fdopen_flush(void);

/* ------------------------------------------------------------------ init.c */

/* Idempotent lazy init (binds symbols, parses config). Any thread: the
 * constructor, or the first interposed call that runs before it. */
void hb_init(void);

#endif
