/*
 * hb_os.h - the OS layer's contract: the bottom of libhbshim.
 *
 * os.c makes every system call the shim makes for itself, and the
 * interposers' fallbacks before binding; os_lock.c is the futex lock the
 * shim's threads share; real.c binds the next definition of every
 * interposed function; proc.c says which process this is (and whether it
 * is a vfork child that must change nothing); fmt.c builds strings;
 * counters.c holds the counters. These files call only one another (os.c
 * and fmt.c nothing at all) and never an interposer: nothing here
 * re-enters the shim. Their common rules, unless a function says
 * otherwise:
 *   - results are the value or -errno; errno is never touched;
 *   - any thread may call them, the background thread included;
 *   - they are async-signal-safe: no lock, no allocation, no libc call that
 *     may take one (clock_gettime is the vDSO's);
 *   - pointers must be valid for the kernel to read or write as the
 *     system call of the same name does; nothing is checked beyond that.
 * (mimalloc's prim.h is the model: one file states what the layer below
 * promises, the rest of the library relies on nothing else.)
 */
#ifndef HB_OS_H
#define HB_OS_H

#include "hb_types.h"

/* ------------------------------------------------------------------ os.c */

/* One raw system call each, the one every architecture has (arm64's
 * generic table has no poll, select, dup2 or epoll_wait: those are made
 * from ppoll, pselect6, dup3 and epoll_pwait). Result or -errno. */
long hb_os_getsockopt(int fd, int level, int opt, void *val, socklen_t *len);
long hb_os_setsockopt(int fd, int level, int opt, const void *val, socklen_t len);
/* setsockopt with an int value v. */
long hb_os_setsockopt_int(int fd, int level, int opt, int v);
long hb_os_getsockname(int fd, struct sockaddr *sa, socklen_t *len);
long hb_os_getpeername(int fd, struct sockaddr *sa, socklen_t *len);
long hb_os_socket(int domain, int type, int protocol);
long hb_os_bind(int fd, const struct sockaddr *sa, socklen_t len);
long hb_os_listen(int fd, int backlog);
long hb_os_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags);
long hb_os_connect(int fd, const struct sockaddr *sa, socklen_t len);
long hb_os_shutdown(int fd, int how);
/* close(2). The caller must own fd (the shim closes only its own). */
long hb_os_close(int fd);
long hb_os_read(int fd, void *buf, size_t n);
long hb_os_write(int fd, const void *buf, size_t n);
/* write() that raises no SIGPIPE, SIGXFSZ or SIGTTOU of the shim's own:
 * the three are blocked for the calling thread around the write and a
 * failed write's own signal is consumed, unless one was already pending
 * (see os.c for the one race it leaves). For the shim's output files. */
long hb_os_write_quiet(int fd, const void *buf, size_t n);
long hb_os_send(int fd, const void *buf, size_t n, int flags);
long hb_os_recv(int fd, void *buf, size_t n, int flags);
long hb_os_recvmsg(int fd, struct msghdr *m, int flags);
long hb_os_sendmsg(int fd, const struct msghdr *m, int flags);
long hb_os_open(const char *path, int flags, int mode);
long hb_os_rename(const char *from, const char *to);
long hb_os_unlink(const char *path);
long hb_os_chmod(const char *path, int mode);
struct stat;
/* stat, or lstat when nofollow. */
long hb_os_stat(const char *path, struct stat *st, int nofollow);
long hb_os_fstat(int fd, struct stat *st);
long hb_os_lseek(int fd, long off, int whence);
/* fcntl with an integer argument (or none). */
long hb_os_fcntl(int fd, int cmd, long arg);
long hb_os_ioctl(int fd, unsigned long req, void *arg);
long hb_os_epoll_ctl(int epfd, int op, int fd, void *ev);
int hb_os_geteuid(void);
int hb_os_getpid(void);
int hb_os_gettid(void);
/* n bytes from the kernel's random pool without blocking; -errno when it
 * has none to give (ENOSYS, EAGAIN early at boot). */
long hb_os_getrandom(void *buf, size_t n);
/* The soft limit on open files (RLIMIT_NOFILE) into *soft: 0 or -errno. */
long hb_os_nofile_limit(unsigned long *soft);
/* poll(2) on one fd: timeout_ms < 0 waits without limit; *revents (when
 * not NULL) receives the events. Result or -errno. */
long hb_os_poll1(int fd, short events, int timeout_ms, short *revents);
/* kcmp(2): 0 same, 1/2 ordered, 3 different, or -errno (ENOSYS, EPERM:
 * a seccomp profile without CAP_SYS_PTRACE). */
long hb_os_kcmp(int pid1, int pid2, int type, unsigned long a, unsigned long b);
/* futex(2) private wait while *addr == val, at most timeout_ms (< 0: no
 * limit), and wake of one waiter. */
long hb_os_futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t timeout_ms);
long hb_os_futex_wake(_Atomic uint32_t *addr);
/* Zeroed anonymous read-write memory, private or shared with forked
 * children, or NULL. Never unmapped by the shim except through
 * hb_os_munmap. */
void *hb_os_mmap(size_t len);
void *hb_os_mmap_shared(size_t len);
/* Unmap what hb_os_mmap gave: 0 or -errno. */
long hb_os_munmap(void *addr, size_t len);
long hb_os_madvise(void *addr, size_t len, int advice);
uint64_t hb_os_now_ms(void);  /* CLOCK_MONOTONIC in milliseconds */
uint64_t hb_os_now_ns(void);  /* CLOCK_MONOTONIC in nanoseconds */
uint64_t hb_os_wall_ms(void); /* CLOCK_REALTIME in milliseconds */
/* nanosleep; an interrupted sleep ends early. */
void hb_os_sleep_us(unsigned us);
/* SO_COOKIE of fd; without SO_COOKIE (qemu-user, gVisor, kernels before
 * 4.12) the socket's inode number with the top bit set; 0 when fd is not a
 * socket. Never 0 for a socket. */
uint64_t hb_os_cookie(int fd);
/* Raise SIGPIPE on the calling thread, as the kernel would on EPIPE: for
 * an application send without MSG_NOSIGNAL that failed EPIPE on a call of
 * the shim's own, made with MSG_NOSIGNAL. */
void hb_os_raise_sigpipe(void);

/* TCP_INFO of fd into *x (zeroed past what the kernel filled; x->len says
 * how much): 0 or -errno. Sets hb_os_ti_short on a short answer. */
long hb_os_tcp_info(int fd, struct hb_tcp_info *x);
/* Set once a TCP_INFO answer stopped before tcpi_last_data_recv (qemu-user,
 * gVisor): framed connections then time the peer's silence themselves. */
extern _Atomic int hb_os_ti_short;
/* Whether another process (our parent or one of our children) still has
 * fd's socket open: 1 yes, 0 no, -1 cannot tell (no /proc, a process we may
 * not look into); callers take -1 as "shared". Reads /proc within a fixed
 * budget. */
int hb_os_sock_shared(int fd);

/* The application's calls as the interposers' fallbacks before binding:
 * the one system call every architecture has for each (poll from ppoll,
 * select from pselect6, dup2 from dup3 or F_GETFD, epoll_wait from
 * epoll_pwait); ppoll and pselect copy the timeout, which stays the
 * caller's, as libc's do; select leaves the time not slept in *tv as
 * Linux's does. Result or -errno. */
long hb_os_poll(struct pollfd *fds, unsigned long n, int timeout_ms);
long hb_os_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv);
long hb_os_dup2(int oldfd, int newfd);
long hb_os_readv(int fd, const struct iovec *iov, int n);
long hb_os_writev(int fd, const struct iovec *iov, int n);
long hb_os_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *sa, socklen_t *len);
long hb_os_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *sa,
		  socklen_t len);
long hb_os_ppoll(struct pollfd *fds, unsigned long n, const struct timespec *ts,
		 const sigset_t *mask);
long hb_os_pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
		   const sigset_t *mask);
long hb_os_epoll_pwait(int epfd, void *evs, int max, int ms, const sigset_t *mask);
long hb_os_epoll_pwait2(int epfd, void *evs, int max, const struct timespec *ts,
			const sigset_t *mask);
long hb_os_execve(const char *path, char *const argv[], char *const env[]);
long hb_os_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4,
		 unsigned long a5);
/* Any system call: the syscall interposer's fallback before binding. */
long hb_os_syscall6(long n, long a, long b, long c, long d, long e, long f);
long hb_os_dup(int fd);
long hb_os_dup3(int oldfd, int newfd, int flags);
long hb_os_close_range(unsigned first, unsigned last, int flags);
long hb_os_sendfile(int out, int in, off_t *off, size_t n);
long hb_os_splice(int in, loff_t *off_in, int out, loff_t *off_out, size_t n, unsigned flags);
struct mmsghdr;
long hb_os_sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags);
long hb_os_recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *timeout);
/* The kernel's 64-bit signal mask: rt_sigprocmask, rt_sigpending, and a
 * zero-timeout ppoll under *mask that runs the handlers of pending signals
 * it unblocks (-EINTR when one ran). Calling thread's mask. */
long hb_os_sigmask(int how, const uint64_t *set, uint64_t *old);
long hb_os_sigpending(uint64_t *set);
long hb_os_sigdeliver(const uint64_t *mask);

/* ------------------------------------------------------------------ os_lock.c */

/* A lock is one _Atomic uint32_t, 0 when free. These are the exception to
 * "no lock" above: hb_lock waits (spins, then futex), and none of them is
 * async-signal-safe except hb_trylock and hb_unlock. A lock is held by one
 * thread at a time and is not recursive. */

/* The background thread's tid once it runs, else 0 (thread.c sets it): the
 * locks and the negotiation tell their own thread from it. Relaxed; any
 * thread. */
extern _Atomic uint32_t hb_thread_tid;
/* The calling thread's id (the locks' owner value). Any thread. */
uint32_t hb_self_tid(void);
/* Forget the cached id: the only thread of a fork child. */
void hb_lock_forget_tid(void);
/* Take l, waiting: 0, or -EDEADLK when this thread holds it already. App. */
int hb_lock(_Atomic uint32_t *l);
/* Take l without waiting: 1 when taken. Any thread. */
int hb_trylock(_Atomic uint32_t *l);
/* Whether an application thread (the caller included) holds l. Any thread. */
int hb_lock_held_by_app(_Atomic uint32_t *l);
/* Take l unless an application thread holds it (waits a few ms at most
 * behind the background thread): 1 when taken. Any thread. */
int hb_lock_unless_app(_Atomic uint32_t *l);
/* Take l for an application call (nb: never behind another application
 * thread): 0, or -EAGAIN (not taken). App. */
int hb_lock_io(_Atomic uint32_t *l, int nb);
/* Release l (held by the caller). */
void hb_unlock(_Atomic uint32_t *l);

/* ------------------------------------------------------------------ fmt.c */

/* struct hb_buf (hb_types.h): a bounded string builder over caller memory.
 * Never allocates, never overflows (output is truncated at cap - 1 bytes,
 * room kept for the NUL), pure, async-signal-safe. b must have been set up
 * with hb_buf_init. */
void hb_buf_init(struct hb_buf *b, char *mem, size_t cap);
void hb_buf_putc(struct hb_buf *b, char c);
void hb_buf_puts(struct hb_buf *b, const char *s);
void hb_buf_putu(struct hb_buf *b, uint64_t v);
void hb_buf_puti(struct hb_buf *b, int64_t v);
void hb_buf_putx(struct hb_buf *b, uint64_t v); /* lower-case hex */
/* JSON string body (no quotes) with escapes. */
void hb_buf_json_str(struct hb_buf *b, const char *s);
/* "1.2.3.4:80" or "[::1]:80"; "?" for anything else. */
void hb_buf_addr(struct hb_buf *b, const struct sockaddr *sa, socklen_t len);
/* printf subset: %s %c %d %i %u %ld %lu %lld %llu %zu %zd %x %lx %p %%. */
void hb_buf_vfmt(struct hb_buf *b, const char *fmt, va_list ap);
void hb_buf_fmt(struct hb_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* NUL-terminate (within cap) and return the string. */
const char *hb_buf_str(struct hb_buf *b);

/* ------------------------------------------------------------------ counters.c */

enum {
	HB_ST_CONN_KEEPALIVE, /* gauge: tracked connections in keepalive mode */
	HB_ST_CONN_FRAME,     /* gauge: tracked connections in frame mode */
	HB_ST_DEAD_KEEPALIVE, /* dead peers detected by the kernel keepalive / user timeout */
	HB_ST_DEAD_IDLE,      /* idle deadline fired */
	HB_ST_DEAD_HEARTBEAT, /* heartbeat timeout (frame mode) */
	HB_ST_DEAD_WRITE,     /* data sent, nothing answered for the timeout (keepalive.c) */
	HB_ST_DEADLINE_CONNECT, /* connect deadline fired */
	HB_ST_DEADLINE_IDLE,  /* idle deadline fired */
	HB_ST_HB_SENT,        /* heartbeats sent */
	HB_ST_HB_RECV,        /* heartbeats received */
	HB_ST_PROTO_ERR,      /* protocol errors */
	HB_ST_ACCEPTED,       /* connections accepted */
	HB_ST_CONNECTED,      /* connections made */
	HB_ST_UNTRACKED,      /* sockets passed through (table or pool full) */
	HB_ST_LOG_DROP_RATE,  /* log lines dropped by the rate cap */
	HB_ST_LOG_DROP_WRITE, /* log lines dropped: not writable (full pipe, no reader, full disk) */
	HB_ST_EV_DROP_RATE,   /* event lines dropped by the rate cap */
	HB_ST_EV_DROP_WRITE,  /* event lines dropped: not writable */
	HB_ST_FAULTS,         /* injected faults: HB_FA_COUNT slots, by HB_FA_* action */
	HB_ST_COUNT = HB_ST_FAULTS + HB_FA_COUNT
};
/* The counters, relaxed atomics bumped on the paths that observe the
 * event (any thread, async-signal-safe); stats.c renders them. k is an
 * HB_ST_* index; a gauge takes negative v. */
extern _Atomic uint64_t hb_stats[HB_ST_COUNT];
static inline void hb_stat_add(int k, int64_t v) { hb_add_relaxed(&hb_stats[k], (uint64_t)v); }
/* Connections adopted across exec (inherit.c): such a process tracked
 * connections too. */
extern _Atomic int hb_stats_adopted;

/* ------------------------------------------------------------------ proc.c */

/* 1 when the shim is configured and enabled. Set once by the constructor;
 * read on every tracked path. */
extern int hb_enabled;
/* This process's pid, set at load and in every fork child. A call that
 * finds another pid runs in a vfork child (python's subprocess), which
 * shares our memory: it must not change the shim's fd table, which is the
 * parent's (its closes would otherwise clear the parent's). A connection's
 * state it may bring up to date with the socket they share (the exec
 * export takes the peer's hello first: leave.c). Or in
 * a child of a raw clone (vsftpd), which has memory of its own: the probe
 * page or kcmp tells the two apart. */
extern int hb_self_pid;
/* Set, in the thread it runs on, by a process that runs in the memory of
 * the table's owner (a vfork child) or cannot tell whether it does, when it
 * left the table unchanged (hb_vfork_check): its pid. Its closes are not
 * recorded, so an entry may name a file that is no longer the socket:
 * hb_fd_conn then checks the socket's cookie. Thread-local: a vfork child
 * runs on the thread that called vfork; no other thread pays. Cleared when
 * the owner sees it again (the child exec'd or exited). */
extern __thread int hb_vfork_mark __attribute__((tls_model("initial-exec")));
/* Record our pid and map the probe page. on_clone runs when a raw clone's
 * child finds it has memory of its own (own_files: it has its own fd table
 * too); it must make the shim's state the child's, as a fork handler
 * would. Constructor, first, single-threaded. */
void hb_proc_init(void (*on_clone)(int own_files));
/* 1 when no installed signal handler lacks SA_RESTART: a call the shim
 * itself interrupted in a wait (poll) may then be restarted, as the kernel
 * restarts one whose handler had SA_RESTART (which signal ran is not
 * known). Reads the dispositions with sigaction; any thread. */
int hb_proc_handlers_restart(void);
/* The fork child handler (pthread_atfork, registered by the constructor):
 * takes the child's pid. */
void hb_proc_after_fork(void);
/* pid (the caller's, not hb_self_pid): 1 when this process runs in our
 * memory (a vfork child, or cannot tell; sets hb_vfork_mark), 0 when it
 * has its own (takes pid as its own and runs the on_clone hook).
 * Async-signal-safe except for what the hook does. */
int hb_vfork_check(int pid);
/* With hb_vfork_mark set, whether fd may be used as the socket whose
 * cookie (hb_os_cookie) was recorded: 1 when this is the table's owner
 * again (the child has exec'd or exited: the mark is cleared) or fd still
 * is that socket, 0 when fd may name another file now (cookie 0: unknown,
 * taken as another file). Any thread. */
int hb_vfork_same_socket(int fd, uint64_t cookie) __attribute__((cold));
/* 1 in a process that must not change the shim's fd table (a vfork
 * child). One getpid; any thread. */
int hb_vforked(void);

/* ------------------------------------------------------------------ real.c */

/* The next definition of every interposed function (struct hb_real,
 * hb_types.h), NULL until bound: callers then fall back to os.c. */
extern struct hb_real hb_real;
/* Bind every pointer of hb_real with dlsym(RTLD_NEXT). Any thread, and
 * re-entrantly: a recursive or concurrent call returns at once and its
 * caller uses raw system calls. Aborts with a clear message when dlsym
 * returns our own symbol. Never from close-like paths (dlsym may allocate;
 * an allocator may close). Not async-signal-safe. */
void hb_real_bind(void);
/* recvmsg, sendmsg, recvfrom and sendto (no address) through the next
 * definition, so that tools interposing them after us see the bytes;
 * os.c's raw call until bound. The result or -errno, errno preserved.
 * Any thread; as signal-safe as the next definition. */
long hb_next_recvmsg(int fd, struct msghdr *m, int flags);
long hb_next_sendmsg(int fd, const struct msghdr *m, int flags);
long hb_next_recv(int fd, void *buf, size_t n, int flags);
long hb_next_send(int fd, const void *buf, size_t n, int flags);

#endif
