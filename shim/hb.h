/*
 * hb.h - the one private header of libhbshim.
 *
 * Declares every function shared between files of shim/, grouped by the file
 * that defines it. Conventions (../STYLE.md):
 *   - internals return 0 / -errno and never touch errno; interposers (the
 *     i_*.c files) convert to -1 + errno at one boundary;
 *   - cross-file names start with hb_, public API with hbshim_;
 *   - each function says which thread may call it.
 */
#ifndef HB_H
#define HB_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <fcntl.h> /* loff_t (musl declares it there) */
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <poll.h>
#include <signal.h>
#include <sys/select.h>
#include <netinet/tcp.h>
#include <time.h>

#include "atomic.h"
#include "codec.h"

#define HB_EXPORT __attribute__((visibility("default")))
#define HB_LIKELY(x) __builtin_expect(!!(x), 1)
#define HB_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------------------------ config.c */

#define HB_MAX_RULES 32
#define HB_PATH_MAX 512
/* HBSHIM_ONLY_CMDS / HBSHIM_SKIP_CMDS: at most this many names, each at most
 * HB_CMD_NAME_MAX bytes; stored as "a,b,c" in HB_CMDS_MAX bytes. */
#define HB_MAX_CMDS 32
#define HB_CMD_NAME_MAX 255
#define HB_CMDS_MAX (HB_MAX_CMDS * (HB_CMD_NAME_MAX + 1))

enum { HB_LOG_OFF = 0, HB_LOG_ERROR, HB_LOG_WARN, HB_LOG_INFO, HB_LOG_DEBUG };
enum { HB_ACCEPT_AUTO = 0, HB_ACCEPT_RAW = 1 };

/* One peer rule of HBSHIM_FRAME. family 0 matches any address family. */
struct hb_rule {
	uint8_t family;   /* 0 (any), AF_INET or AF_INET6 */
	uint8_t prefix;   /* prefix length in bits; 0 with family 0 = "*" */
	uint16_t port;    /* host order; 0 = any port */
	uint8_t addr[16]; /* network order, 4 or 16 bytes used */
};

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
 * delimit the offending item (for the error line). */
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

/* ------------------------------------------------------------------ fault.c */

/* HBSHIM_FAULTS: test-harness fault rules (grammar in fault.c, runtime in
 * fault_io.c). */
#define HB_MAX_FAULTS 16
#define HB_FAULT_NAME 16
enum { HB_FA_NONE = 0, HB_FA_LATENCY, HB_FA_BANDWIDTH, HB_FA_SLICER, HB_FA_HANG, HB_FA_RESET,
       HB_FA_CLOSE, HB_FA_LIMIT, HB_FA_ERRNO, HB_FA_REFUSE, HB_FA_TIMEOUT, HB_FA_DELAY,
       HB_FA_COUNT };
#define HB_FDIR_IN  1u /* bytes toward the application (reads) */
#define HB_FDIR_OUT 2u /* bytes from the application (writes) */
enum { HB_FSIDE_ANY = 0, HB_FSIDE_CONNECT = 1, HB_FSIDE_ACCEPT = 2 };
enum { HB_FCALL_ANY = 0, HB_FCALL_CONNECT = 1, HB_FCALL_READ = 2, HB_FCALL_WRITE = 3 };

/* One rule; immutable after parsing. */
struct hb_fault {
	char name[HB_FAULT_NAME]; /* name=, default "f<position>" */
	uint8_t action;           /* HB_FA_* */
	uint8_t dir;              /* HB_FDIR_* bits; 0 for connect faults */
	uint8_t side;             /* HB_FSIDE_* */
	uint8_t call;             /* HB_FCALL_* (errno only) */
	uint32_t arg;             /* ms (latency, delay), bytes/s, bytes, errno */
	uint32_t jitter_ms;       /* latency +- this */
	uint32_t after_ms;        /* trigger: this long after connect/accept */
	uint32_t for_ms;          /* active this long after the trigger; 0 = ever */
	uint32_t nth;             /* trigger: the Nth matching call; 0 = any */
	uint32_t prob_ppm;        /* trigger: per call, in millionths (10^6 = always) */
	uint64_t after_bytes;     /* trigger: after this many bytes in dir */
	struct hb_rule peer;      /* which peers; "*" by default */
};
/* Parse a whole HBSHIM_FAULTS value into out[0..max): 0 and the count in
 * *n, or -EINVAL / -E2BIG with *bad, *badlen delimiting the offending rule
 * (for the error line). Pure; any thread. */
int hb_fault_parse(const char *s, struct hb_fault *out, int max, int *n, const char **bad,
		   size_t *badlen);
/* One rule s[0..n) (no ';'); index names it when it has no name=. */
int hb_fault_parse_one(const char *s, size_t n, struct hb_fault *f, int index);
const char *hb_fault_action_name(int action);
const char *hb_fault_errno_name(int err);

/* The whole configuration, parsed once and then read-only. */
struct hb_config {
	int disabled;                /* HBSHIM_DISABLE=1 or an invalid value */
	uint32_t interval_ms;        /* HBSHIM_INTERVAL, default 5000 */
	uint32_t timeout_ms;         /* HBSHIM_TIMEOUT, default 3 x interval */
	uint32_t connect_timeout_ms; /* HBSHIM_CONNECT_TIMEOUT, 0 = off (default) */
	uint32_t idle_timeout_ms;    /* HBSHIM_IDLE_TIMEOUT, 0 = off (default) */
	int log_level;               /* HBSHIM_LOG, default warn */
	int accept_mode;             /* HBSHIM_ACCEPT, default auto */
	char log_file[HB_PATH_MAX];  /* HBSHIM_LOG_FILE, "" = stderr */
	char events_file[HB_PATH_MAX]; /* HBSHIM_EVENTS, "" = off */
	char stats_file[HB_PATH_MAX];  /* HBSHIM_STATS, "" = off */
	int nrules;                  /* HBSHIM_FRAME */
	struct hb_rule rules[HB_MAX_RULES];
	char only_cmds[HB_CMDS_MAX]; /* HBSHIM_ONLY_CMDS, "" = every program */
	char skip_cmds[HB_CMDS_MAX]; /* HBSHIM_SKIP_CMDS, "" = none */
	int nfaults;                 /* HBSHIM_FAULTS */
	struct hb_fault faults[HB_MAX_FAULTS];
	char control_path[HB_PATH_MAX]; /* HBSHIM_CONTROL, "" = off */
	uint64_t seed;               /* HBSHIM_SEED */
	int seed_set;                /* HBSHIM_SEED was given */
};

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

/* How a variable's value is parsed and stored (struct hb_option.kind). */
enum { HB_OPT_BOOL, HB_OPT_DURATION, HB_OPT_TIMEOUT, HB_OPT_RULES, HB_OPT_ACCEPT, HB_OPT_LOG,
       HB_OPT_PATH, HB_OPT_CMDS, HB_OPT_FAULTS, HB_OPT_SEED };
/* HB_OPT_* flags for the wrapper. */
#define HB_OPTF_FLAG       1u /* takes no value on the command line ("1") */
#define HB_OPTF_REPEATABLE 2u /* repeated options are joined with ',' */
#define HB_OPTF_SEMI       4u /* with HB_OPTF_REPEATABLE: joined with ';' instead */

/* One row per variable: the only list of settings. hb_config_parse reads
 * it in order (HBSHIM_INTERVAL before HBSHIM_TIMEOUT); the wrapper's option
 * parsing and --help come from it; tests/bats/config.bats checks README's
 * settings table against --help. */
struct hb_option {
	const char *env;     /* HBSHIM_... */
	const char *option;  /* wrapper option, e.g. "--interval", or NULL */
	const char *metavar; /* what the option's value looks like in --help */
	unsigned flags;      /* HB_OPTF_* */
	uint8_t kind;        /* HB_OPT_* */
	uint16_t off;        /* offsetof(struct hb_config, field) */
	uint32_t min_ms, max_ms; /* HB_OPT_DURATION, HB_OPT_TIMEOUT bounds */
	const char *init;    /* value parsed before the environment, or NULL (zero) */
	const char *deflt;   /* the default as users read it */
	const char *doc;     /* one line */
	const char *expect;  /* what the error line offers instead of a bad value */
};
extern const struct hb_option hb_options[];
extern const int hb_noptions;

/* The process-wide configuration (valid after hb_init()). */
extern struct hb_config hb_cfg;

/* ------------------------------------------------------------------ fmt.c */

/* A bounded string builder over caller memory; never allocates, never
 * overflows (output is truncated), async-signal-safe. */
struct hb_buf {
	char *p;
	size_t len, cap;
};
void hb_buf_init(struct hb_buf *b, char *mem, size_t cap);
void hb_buf_putc(struct hb_buf *b, char c);
void hb_buf_puts(struct hb_buf *b, const char *s);
void hb_buf_putu(struct hb_buf *b, uint64_t v);
void hb_buf_puti(struct hb_buf *b, int64_t v);
void hb_buf_putx(struct hb_buf *b, uint64_t v);
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

/* ------------------------------------------------------------------ real.c */

/* Pointers to the next definition of every interposed function, bound with
 * dlsym(RTLD_NEXT) once (constructor, or the first interposed call that is
 * not close-like). NULL until bound: the callers then fall back to os.c's
 * raw system calls. */
#ifdef __GLIBC__
typedef unsigned long hb_ioctl_req_t;
typedef int hb_mmsg_flags_t;
#else /* musl's prototypes */
typedef int hb_ioctl_req_t;
typedef unsigned int hb_mmsg_flags_t;
#endif
struct hb_real {
	int (*socket)(int, int, int);
	int (*connect)(int, const struct sockaddr *, socklen_t);
	int (*accept)(int, struct sockaddr *, socklen_t *);
	int (*accept4)(int, struct sockaddr *, socklen_t *, int);
	int (*listen)(int, int);
	int (*setsockopt)(int, int, int, const void *, socklen_t);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
	int (*poll)(struct pollfd *, nfds_t, int);
	int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
		       const sigset_t *);
	int (*close)(int);
	int (*shutdown)(int, int);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*fcntl)(int, int, ...);
	int (*fcntl64)(int, int, ...);
	int (*ioctl)(int, hb_ioctl_req_t, ...);
	int (*close_range)(unsigned, unsigned, int);
	void (*closefrom)(int);
	int (*fclose)(void *);
	void *(*fdopen)(int, const char *);
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
#ifdef __GLIBC__ /* musl's headers make sendfile64 a macro for sendfile */
	ssize_t (*sendfile64)(int, int, off_t *, size_t);
#endif
	ssize_t (*splice)(int, loff_t *, int, loff_t *, size_t, unsigned int);
	int (*sendmmsg)(int, struct mmsghdr *, unsigned int, hb_mmsg_flags_t);
	int (*recvmmsg)(int, struct mmsghdr *, unsigned int, hb_mmsg_flags_t, struct timespec *);
	int (*prctl)(int, unsigned long, unsigned long, unsigned long, unsigned long);
	long (*syscall)(long, ...);
	int (*epoll_ctl)(int, int, int, void *);
	int (*epoll_wait)(int, void *, int, int);
	int (*epoll_pwait)(int, void *, int, int, const sigset_t *);
	int (*epoll_pwait2)(int, void *, int, const struct timespec *, const sigset_t *);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
	int (*posix_spawn)(pid_t *, const char *, const void *, const void *, char *const[],
			   char *const[]);
	int (*posix_spawnp)(pid_t *, const char *, const void *, const void *, char *const[],
			    char *const[]);
};
extern struct hb_real hb_real;

/* Bind every pointer of hb_real. Safe to call from any thread and
 * re-entrantly (a recursive call returns at once and the caller uses raw
 * syscalls). Aborts with a clear message if dlsym returns our own symbol.
 * Never call it from close-like paths. */
void hb_real_bind(void);
/* recvmsg, sendmsg, recvfrom and sendto (no address) through the next
 * definition, os.c's raw call until bound: the result or -errno, errno
 * preserved. Any thread. */
long hb_next_recvmsg(int fd, struct msghdr *m, int flags);
long hb_next_sendmsg(int fd, const struct msghdr *m, int flags);
long hb_next_recv(int fd, void *buf, size_t n, int flags);
long hb_next_send(int fd, const void *buf, size_t n, int flags);

/* ------------------------------------------------------------------ os.c */

/* The shim's own system calls. They never enter an interposer, never touch
 * errno and return the result or -errno. Any thread, async-signal-safe. */
long hb_os_getsockopt(int fd, int level, int opt, void *val, socklen_t *len);
long hb_os_setsockopt(int fd, int level, int opt, const void *val, socklen_t len);
long hb_os_setsockopt_int(int fd, int level, int opt, int v);

/* The kernel's struct tcp_info up to tcpi_total_retrans, declared here
 * because the libcs disagree (glibc stops there, musl declares it all):
 * the same layout with either. */
struct hb_ti {
	uint8_t tcpi_state, tcpi_ca_state, tcpi_retransmits, tcpi_probes, tcpi_backoff;
	uint8_t tcpi_options, tcpi_wscale, tcpi_flags2;
	uint32_t tcpi_rto, tcpi_ato, tcpi_snd_mss, tcpi_rcv_mss;
	uint32_t tcpi_unacked, tcpi_sacked, tcpi_lost, tcpi_retrans, tcpi_fackets;
	uint32_t tcpi_last_data_sent, tcpi_last_ack_sent, tcpi_last_data_recv, tcpi_last_ack_recv;
	uint32_t tcpi_pmtu, tcpi_rcv_ssthresh, tcpi_rtt, tcpi_rttvar, tcpi_snd_ssthresh;
	uint32_t tcpi_snd_cwnd, tcpi_advmss, tcpi_reordering, tcpi_rcv_rtt, tcpi_rcv_space;
	uint32_t tcpi_total_retrans;
};

/* TCP_INFO as far as the kernel's struct goes. A field past the length
 * the kernel returned reads 0; len says which are real (qemu-user and
 * gVisor may answer with the state alone). */
struct hb_tcp_info {
	struct hb_ti ti;
	uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
	uint32_t segs_out, segs_in, notsent_bytes;
	uint32_t len; /* bytes the kernel filled in */
};
#define HB_TI_HAS(x, field) ((x)->len >= offsetof(struct hb_tcp_info, field) + sizeof((x)->field))
long hb_os_tcp_info(int fd, struct hb_tcp_info *x);
/* Set once a TCP_INFO answer stopped before tcpi_last_data_recv (qemu-user,
 * gVisor): framed connections then time the peer's silence themselves. */
extern _Atomic int hb_os_ti_short;
/* Another process (parent or child) holds the socket too: 1, 0, -1 unknown. */
int hb_os_sock_shared(int fd);
/* kcmp(2): 0 same, 1/2 ordered, 3 different, or -errno (ENOSYS, EPERM:
 * a seccomp profile without CAP_SYS_PTRACE). */
long hb_os_kcmp(int pid1, int pid2, int type, unsigned long a, unsigned long b);
long hb_os_madvise(void *addr, size_t len, int advice);
/* Unmap what hb_os_mmap gave: 0 or -errno. Async-signal-safe. */
long hb_os_munmap(void *addr, size_t len);
long hb_os_shutdown(int fd, int how);
long hb_os_close(int fd);
long hb_os_write(int fd, const void *buf, size_t n);
long hb_os_send(int fd, const void *buf, size_t n, int flags);
long hb_os_recv(int fd, void *buf, size_t n, int flags);
long hb_os_recvmsg(int fd, struct msghdr *m, int flags);
long hb_os_sendmsg(int fd, const struct msghdr *m, int flags);
long hb_os_read(int fd, void *buf, size_t n);
long hb_os_open(const char *path, int flags, int mode);
long hb_os_rename(const char *from, const char *to);
/* write() that raises no SIGPIPE or SIGXFSZ of the shim's own (os.c). */
long hb_os_write_quiet(int fd, const void *buf, size_t n);
long hb_os_unlink(const char *path);
struct stat;
long hb_os_stat(const char *path, struct stat *st, int nofollow);
long hb_os_fstat(int fd, struct stat *st);
long hb_os_lseek(int fd, long off, int whence);
int hb_os_geteuid(void);
long hb_os_getrandom(void *buf, size_t n);
long hb_os_fcntl(int fd, int cmd, long arg);
long hb_os_epoll_ctl(int epfd, int op, int fd, void *ev);
long hb_os_connect(int fd, const struct sockaddr *sa, socklen_t len);
long hb_os_socket(int domain, int type, int protocol);
long hb_os_bind(int fd, const struct sockaddr *sa, socklen_t len);
long hb_os_listen(int fd, int backlog);
long hb_os_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags);
long hb_os_chmod(const char *path, int mode);
/* epollset.c: remember an epoll set a framed socket was added to; take fd
 * (a framed socket about to be closed while the shim keeps a duplicate)
 * out of every such set: -1 when those sets are not all known. Any thread,
 * async-signal-safe. */
void hb_epoll_note(int epfd);
int hb_epoll_detach(int fd);
/* epollmap.c: (epfd, epoll_data) -> fd for the epoll_wait filter. ctl
 * records a successful epoll_ctl (c: the tracked connection behind fd, or
 * NULL for an fd the shim does not track, reported once hb_epmap_used is
 * set). find fills *out and returns 1 when exactly one recorded registration
 * has that data in that set and nothing marked it ambiguous; out->verified
 * says whether the kernel's list of the set confirmed it. check_set reads
 * that list (/proc/self/fdinfo/EPFD) and settles every unconfirmed entry of
 * the set: 0, or -EAGAIN when another reading runs or paused the readings
 * (in proportion to its size), -E2BIG for a list too long to read, -errno. App threads; no call holds a
 * lock across a system call. */
struct epoll_event;
struct hb_conn;
struct hb_epreg {
	int fd, verified;
	uint64_t data;
	uint32_t events, self, gen, ver;
};
extern _Atomic int hb_epmap_used;
void hb_epmap_ctl(struct hb_conn *c, int epfd, int op, int fd, const struct epoll_event *ev);
int hb_epmap_find(int epfd, uint64_t data, struct hb_epreg *out);
int hb_epmap_check_set(int epfd);
long hb_os_ioctl(int fd, unsigned long req, void *arg);
/* The soft limit on open files (RLIMIT_NOFILE) into *soft: 0 or -errno. */
long hb_os_nofile_limit(unsigned long *soft);
long hb_os_poll1(int fd, short events, int timeout_ms, short *revents);
/* poll, select and dup2 as the application called them, from ppoll,
 * pselect6 and dup3 (arm64 has no others): result or -errno. */
long hb_os_poll(struct pollfd *fds, unsigned long n, int timeout_ms);
long hb_os_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv);
long hb_os_dup2(int oldfd, int newfd);
/* The rest of the application's calls, for the interposers' fallbacks
 * before binding: the one system call every architecture has for each
 * (epoll_wait is epoll_pwait; ppoll and pselect copy the timeout, which
 * stays the caller's, as libc's do). Result or -errno. */
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
 * it unblocks (-EINTR when one ran). */
long hb_os_sigmask(int how, const uint64_t *set, uint64_t *old);
long hb_os_sigpending(uint64_t *set);
long hb_os_sigdeliver(const uint64_t *mask);
long hb_os_getsockname(int fd, struct sockaddr *sa, socklen_t *len);
long hb_os_getpeername(int fd, struct sockaddr *sa, socklen_t *len);
long hb_os_futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t timeout_ms);
long hb_os_futex_wake(_Atomic uint32_t *addr);
void *hb_os_mmap(size_t len);     /* zeroed anonymous memory or NULL */
void *hb_os_mmap_shared(size_t len); /* the same, shared with forked children */
uint64_t hb_os_now_ms(void);      /* CLOCK_MONOTONIC in milliseconds */
uint64_t hb_os_now_ns(void);      /* CLOCK_MONOTONIC in nanoseconds */
uint64_t hb_os_wall_ms(void);     /* CLOCK_REALTIME in milliseconds */
int hb_os_getpid(void);
int hb_os_gettid(void);
void hb_os_sleep_us(unsigned us);
/* SO_COOKIE of fd, or 0 when fd is not a socket / the kernel lacks it. */
uint64_t hb_os_cookie(int fd);
/* Raise SIGPIPE on the calling thread, as the kernel would on EPIPE. */
void hb_os_raise_sigpipe(void);

/* ------------------------------------------------------------------ proc.c */

/* 1 when the shim is configured and enabled. Set once by the constructor;
 * read on every tracked path. */
extern int hb_enabled;
/* This process's pid, set at load and in every fork child. A call that
 * finds another pid runs in a vfork child (python's subprocess), which
 * shares our memory: it must not change the shim's state, which is the
 * parent's (a child's close_range wiped the parent's fd table). Or in a
 * child of a raw clone (vsftpd), which has memory of its own: the probe
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
/* Constructor, first: record our pid and map the probe page. on_clone runs
 * when a raw clone's child finds it has memory of its own (own_files: it
 * has its own fd table too); it must make the shim's state the child's, as
 * a fork handler would. */
void hb_proc_init(void (*on_clone)(int own_files));
/* The fork child handler (pthread_atfork, registered by the constructor). */
void hb_proc_after_fork(void);
/* pid (the caller's, not hb_self_pid): 1 when this process runs in our
 * memory (a vfork child, or cannot tell; sets hb_vfork_mark), 0 when it
 * has its own (takes pid as its own and runs the on_clone hook). */
int hb_vfork_check(int pid);
/* 1 in a process that must not change the shim's state (a vfork child). */
static inline int hb_vforked(void)
{
	int pid;

	if (!hb_self_pid)
		return 0;
	pid = hb_os_getpid();
	return HB_UNLIKELY(pid != hb_self_pid) && hb_vfork_check(pid);
}

/* --------------------------------------------------------------- counters.c */

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
 * event (any thread, async-signal-safe); stats.c renders them. */
extern _Atomic uint64_t hb_stats[HB_ST_COUNT];
static inline void hb_stat_add(int k, int64_t v) { hb_add_relaxed(&hb_stats[k], (uint64_t)v); }
/* Connections adopted across exec (inherit.c): such a process tracked
 * connections too. */
extern _Atomic int hb_stats_adopted;
/* ------------------------------------------------------------------ log.c */

extern int hb_log_level; /* copy of hb_cfg.log_level, read without locks */
void hb_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The level test happens before the arguments are evaluated. */
#define hb_log(level, ...)                                    \
	do {                                                  \
		if (HB_UNLIKELY((level) <= hb_log_level))     \
			hb_log_write((level), __VA_ARGS__);   \
	} while (0)
/* Print one line to stderr unconditionally (configuration errors). */
void hb_log_stderr(const char *line);
/* After outfile.c refused path (kind HB_OUT_*): its one warning, if not
 * written yet; on stderr for the log file itself, else as a warn line. */
void hb_log_refused(int kind, const char *path);

/* ------------------------------------------------------------------ conn.c */

enum { HB_MODE_NONE = 0, HB_MODE_KEEPALIVE = 1, HB_MODE_FRAME = 2 };
enum { HB_KIND_SOCKET = 0, HB_KIND_LISTENER = 1, HB_KIND_CONNECTED = 2, HB_KIND_LINGER = 3 };

/* Options the application set itself; the app's explicit choice wins. */
#define HB_APP_KEEPALIVE   (1u << 0)
#define HB_APP_KEEPIDLE    (1u << 1)
#define HB_APP_KEEPINTVL   (1u << 2)
#define HB_APP_KEEPCNT     (1u << 3)
#define HB_APP_USERTIMEOUT (1u << 4)
#define HB_APP_RCVTIMEO    (1u << 5)
#define HB_APP_SNDTIMEO    (1u << 6)
#define HB_APP_RCVLOWAT    (1u << 7)
#define HB_APP_LINGER      (1u << 8)
#define HB_APP_MASK        0x1ffu
/* State flags (same word). */
#define HB_CF_TX_CLAIMED   (1u << 13) /* shared, but this process wrote it since: it sends on it */
#define HB_CF_RD_DOWN      (1u << 15) /* the app's SHUT_RD reached the kernel early (frame.c) */
#define HB_CF_POKE         (1u << 14) /* on the inbox (hb_thread_schedule/_poke) until bg takes it */
#define HB_CF_NONBLOCK     (1u << 16) /* O_NONBLOCK on the open file description */
#define HB_CF_SCHEDULED    (1u << 17) /* handed to the background thread */
#define HB_CF_KA_ARMED     (1u << 18) /* SO_KEEPALIVE switched on by us */
#define HB_CF_LOST         (1u << 19) /* identity check failed: fd reused behind our back */
#define HB_CF_RELEASED     (1u << 20) /* last fd closed */
#define HB_CF_TIMING       (1u << 21) /* keepalive timing options applied */
#define HB_CF_FORKED       (1u << 22) /* parent side of a fork: heartbeats pause briefly */
#define HB_CF_INHERITED    (1u << 23) /* child side of a fork: no heartbeats until used here */
#define HB_CF_SHARED       (1u << 24) /* another process may hold it (fork, exec): sticky */
#define HB_CF_CLAIMED      (1u << 25) /* shared, but this process read it since: it decodes it */
#define HB_CF_SHUT_RD      (1u << 26) /* app shut reading down; the kernel's SHUT_RD waits (frame.c) */
#define HB_CF_UTO_OFF      (1u << 27) /* our TCP_USER_TIMEOUT switched off: data waits (keepalive.c) */
#define HB_CF_TXW          (1u << 28) /* the application wrote since the last window check */
#define HB_CF_ZW_SUSPECT   (1u << 29) /* sent after the peer's last ACK, unanswered at the last check */
#define HB_CF_CONN_EXPIRED (1u << 30) /* a non-blocking connect dissolved by our deadline */
#define HB_CF_QUICKACK     (1u << 31) /* framed: the peer's hello came, no app byte either way yet */

#define HB_CONN_FDS 4

/* Connection state, one per open file description (shared by dup'd fds).
 * Lives in a pool that is never unmapped, so a stale pointer can be read
 * safely; gen tells whether it still is the connection one looked up. */
struct hb_conn {
	_Atomic uint32_t refs;  /* fds referring to it; app threads */
	_Atomic uint32_t gen;   /* bumped when freed; bg writes, all read */
	_Atomic uint32_t flags; /* HB_APP_* | HB_CF_*; app and bg threads */
	_Atomic int dead;       /* 0 or the errno later calls fail with; bg/app write */
	_Atomic int fds[HB_CONN_FDS];       /* fds referring to it, -1 = none */
	_Atomic uint32_t fdgens[HB_CONN_FDS]; /* fd table generation of each fd */
	uint64_t cookie;       /* SO_COOKIE at install; immutable afterwards */
	uint32_t self;         /* pool index + 1; immutable */
	uint8_t family;        /* AF_INET / AF_INET6 */
	uint8_t mode;          /* HB_MODE_*; set before scheduling */
	uint8_t kind;          /* HB_KIND_* */
	_Atomic uint8_t stolen_err; /* an error (ECONNRESET...) a call of the shim's own took from the socket */
	_Atomic uint32_t sndtimeo_ms; /* app's SO_SNDTIMEO, 0 = none */
	_Atomic uint32_t rcvtimeo_ms; /* app's SO_RCVTIMEO, 0 = none */
	_Atomic(struct hb_fstate *) fault; /* fault rules bound at connect/accept
					      (fault_io.c); NULL = none, the only
					      load the I/O paths pay */
	/* Links for the lock-free stacks (pool index + 1, 0 = end). */
	uint32_t free_next;    /* pool free list */
	uint32_t inbox_next;   /* app -> bg: schedule me */
	uint32_t reap_next;    /* app -> bg: last fd closed */
	uint32_t hb_sent_at;   /* bg: our last heartbeat (txlock); kept only once
				  TCP_INFO came back short (hb_os_ti_short) */
	/* Owned by the background thread only. */
	struct hb_conn *wprev, *wnext; /* timer wheel list */
	uint64_t wexpires;             /* due time, monotonic ms */
	uint32_t forked_at;            /* parent of a fork: when HB_CF_FORKED was set; without
					  it, a reader's last look for other holders (ms32) */
	uint32_t rx_bytes;             /* bg: tcpi_bytes_received (low bits) at the last drain */
	uint64_t opened_ms;            /* monotonic ms at install */
	uint64_t last_app_ms;          /* framed: last application byte either way */
	uint32_t peer_interval_ms;     /* how often the peer heartbeats toward us:
					  its hello's interval, paced for our
					  timeout when it paces (rx lock) */
	uint32_t peer_timeout_ms;      /* its hello's timeout: we pace for it */
	/* Monotonic ms, low 32 bits (differences wrap correctly). */
	uint32_t shut_rd_at;           /* when the app asked for SHUT_RD (HB_CF_SHUT_RD) */
	uint32_t bg_partial_at;        /* bg: when it first saw only a magic prefix; 0 = not yet */
	uint32_t partial_at;           /* detect: the same, seen by an app thread (rxlock) */
	uint32_t drained_at;           /* bg: control frames last drained; 0 = never (rxlock) */
	uint32_t ka_ack_at;            /* bg: the peer's last ACK, as of ka_owed_at (keepalive.c) */
	uint32_t ka_owed_at;           /* bg: since when ours is unanswered after it, at the latest */
	uint32_t ka_wait_at;           /* bg: data waits since (at the earliest); 0 = not waiting */
	_Atomic uint32_t ka_txw_at;    /* app: when it set HB_CF_TXW (keepalive mode) */
	_Atomic uint32_t rx_seen;      /* the shim last took bytes from the socket; kept only
					  once TCP_INFO came back short (hb_os_ti_short) */
	/* Framed mode (frame.c). rxmode and rx change under rxlock, txmode and
	 * tx under txlock; both are read without them by quick checks. */
	_Atomic uint8_t rxmode;        /* HB_RX_* */
	_Atomic uint8_t txmode;        /* HB_TX_* */
	uint8_t client;                /* we connected: our hello goes first */
	uint8_t hello_sent;            /* under txlock */
	/* Downgrade to raw (PROTOCOL.md, Downgrade; frame.c). */
	uint8_t peer_dg;               /* the peer's hello said it can downgrade (rx lock) */
	uint8_t dg_sent;               /* our downgrade frame is in tx.pend or out (txlock) */
	_Atomic uint8_t dg_want;       /* reason of a downgrade of our direction due at the
					  next frame boundary, 0 = none */
	uint8_t dg_left;               /* this process left framing (seccomp): handled once */
	uint8_t lowat;                 /* SO_RCVLOWAT we set, 0 = kernel default (rxlock) */
	uint8_t grace;                 /* bg: one recheck granted after a late wakeup */
	uint8_t wlinked;               /* bg: on a wheel list */
	uint8_t phase;                 /* bg: what the next timer does (thread.c) */
	_Atomic uint32_t users;        /* app threads inside frame.c; bg frees at 0 */
	_Atomic uint32_t rxlock;       /* 0 free, else owner tid | HB_LOCK_WAITERS */
	_Atomic uint32_t txlock;
	struct hb_rx rx;
	struct hb_tx tx;
};

enum { HB_RX_RAW = 0, HB_RX_DETECT = 1, HB_RX_FRAMED = 2, HB_RX_FAILED = 3 };
enum { HB_TX_RAW = 0, HB_TX_UNDECIDED = 1, HB_TX_FRAMED = 2 };

/* The mode as users see it (events, stats, hbshim_fd_mode): c->mode is
 * HB_MODE_FRAME also while an accepted connection still waits to learn
 * whether its client speaks hbshim; until a direction is framed it is
 * keepalive mode. */
static inline int hb_conn_public_mode(const struct hb_conn *c)
{
	if (c->mode == HB_MODE_FRAME && hb_load_relaxed(&c->rxmode) != HB_RX_FRAMED &&
	    hb_load_relaxed(&c->txmode) != HB_TX_FRAMED)
		return HB_MODE_KEEPALIVE;
	return c->mode;
}

/* Allocate a zeroed connection with refs = 0 and no fds, or NULL (pool
 * exhausted or mmap failed: the caller passes through untracked).
 * Any thread; lock-free. */
struct hb_conn *hb_conn_alloc(void);
/* Return a connection to the pool. Background thread only (the single
 * reclaimer), or any thread for a connection never published. */
void hb_conn_free(struct hb_conn *c);
/* Pool index + 1 <-> pointer. */
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
/* Number of connections in use (stats). */
uint32_t hb_conn_in_use(void);

/* ------------------------------------------------------------------ fdtable.c */

/* Entry word layout: state (2 bits) | busy count (16 bits) | generation (32). */
#define HB_FD_EMPTY   0ull
#define HB_FD_ACTIVE  1ull
#define HB_FD_CLOSING 2ull
#define HB_FD_STATE(w) ((w)&3ull)
#define HB_FD_BUSY_ONE (1ull << 2)
#define HB_FD_BUSY(w) (((w) >> 2) & 0xffffull)
#define HB_FD_GEN(w) ((uint32_t)((w) >> 32))
#define HB_FD_MAKE(state, busy, gen) ((state) | ((uint64_t)(busy) << 2) | ((uint64_t)(gen) << 32))

#define HB_FD_CHUNK_SHIFT 12
#define HB_FD_CHUNK (1u << HB_FD_CHUNK_SHIFT)
#define HB_FD_MAX (1u << 20) /* fds at or above this pass through untracked */

struct hb_fdent {
	_Atomic uint64_t word;            /* state/busy/gen; see DESIGN.md */
	_Atomic(struct hb_conn *) conn;   /* set before ACTIVE, cleared in CLOSING */
};

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

struct hb_conn *hb_fd_conn_marked(int fd, struct hb_conn *c) __attribute__((cold));

/* c, the raw entry for fd, or NULL when fd is provably not its socket in
 * a vfork child (the fast paths of i_io.c look up raw and vet in their
 * slow part: no stack frame for an untracked fd). */
static inline struct hb_conn *hb_fd_conn_vet(int fd, struct hb_conn *c)
{
	if (HB_UNLIKELY(c && hb_vfork_mark))
		return hb_fd_conn_marked(fd, c);
	return c;
}

/* The connection behind fd, or NULL (also when fd is provably not the
 * connection's socket in a vfork child). */
static inline struct hb_conn *hb_fd_conn(int fd)
{
	return hb_fd_conn_vet(fd, hb_fd_conn_raw(fd));
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
 * tracked (end must then be called) and 0 otherwise. */
int hb_fd_forget_begin(int fd);
void hb_fd_forget_end(int fd, int ok);

/* Forget every tracked fd in [lo, hi] (close_range, closefrom). */
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

/* Visit every ACTIVE entry (fork rebuild, stats). */
void hb_fd_foreach(void (*fn)(int fd, struct hb_conn *c, void *arg), void *arg);

/* ------------------------------------------------------------------ wheel.c */

/* Hierarchical timer wheel with cascading, 1 ms ticks, intrusive doubly
 * linked lists through hb_conn.wprev/wnext: O(1) add, O(1) delete, per-tick
 * cost independent of the number of pending timers. Single-threaded: owned
 * by the background thread (and by unit tests). */
#define HB_WHEEL_L0_BITS 8
#define HB_WHEEL_LN_BITS 6
#define HB_WHEEL_LEVELS 5
struct hb_wheel {
	uint64_t now;    /* next tick to process (ms) */
	uint32_t count;  /* linked timers */
	struct hb_conn *l0[1u << HB_WHEEL_L0_BITS];
	struct hb_conn *ln[HB_WHEEL_LEVELS - 1][1u << HB_WHEEL_LN_BITS];
};
void hb_wheel_init(struct hb_wheel *w, uint64_t now_ms);
/* Link c to fire at expires (ms); a past time fires at the next advance.
 * c must not be linked. */
void hb_wheel_add(struct hb_wheel *w, struct hb_conn *c, uint64_t expires);
void hb_wheel_del(struct hb_wheel *w, struct hb_conn *c);
/* Process ticks up to now, calling fire(c) for every due timer (c is
 * unlinked before the call and may be re-added from inside it). */
void hb_wheel_advance(struct hb_wheel *w, uint64_t now_ms,
		      void (*fire)(struct hb_conn *c, void *arg), void *arg);
/* Earliest tick at which something may fire, or UINT64_MAX when empty.
 * May be early (never late) for timers on the higher levels. */
uint64_t hb_wheel_next(const struct hb_wheel *w);

/* ------------------------------------------------------------------ keepalive.c */

/* Kernel keepalive settings derived from interval and timeout. */
struct hb_ka {
	int idle_s;           /* TCP_KEEPIDLE */
	int intvl_s;          /* TCP_KEEPINTVL */
	int cnt;              /* TCP_KEEPCNT */
	unsigned user_timeout_ms; /* TCP_USER_TIMEOUT */
	unsigned jitter_ms;   /* spread of the SO_KEEPALIVE switch-on time */
};
/* Pure derivation; see DESIGN.md "Keepalive mode". */
void hb_ka_derive(uint32_t interval_ms, uint32_t timeout_ms, struct hb_ka *out);
extern struct hb_ka hb_ka_cfg; /* derived once at init */
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

/* ------------------------------------------------------------------ frame.c */

/* A frame rule matched this outgoing connection: frame our direction (hello
 * first), detect the peer's. App thread, right after connect returned 0 or
 * EINPROGRESS. */
void hb_frame_client(int fd, struct hb_conn *c, int established);
/* An accepted connection under HBSHIM_ACCEPT=auto: detect the client's
 * hello, frame our direction only after it arrived. App thread. */
void hb_frame_server(int fd, struct hb_conn *c);
void hb_frame_accepted(int fd, struct hb_conn *c);
void hb_frame_connected(struct hb_conn *c, int fd);
int hb_frame_app_readable(struct hb_conn *c, int fd);
extern _Atomic int hb_frame_seen; /* some connection of this process is framed */
/* Application I/O on a framed (or negotiating) connection. Return the
 * application byte count or -errno. App threads. */
long hb_frame_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags);
long hb_frame_send(struct hb_conn *c, int fd, const struct msghdr *m, int flags);
/* Zero-copy sends and receives (sendfile, splice): the header goes first,
 * then xfer(ctx, n) makes the real call for at most n payload bytes and
 * returns its count or -errno. avail bounds what the source can deliver
 * (bytes left in a regular file, bytes in a pipe), so a frame never promises
 * more than will come. App threads. */
long hb_frame_xfer_out(struct hb_conn *c, int fd, size_t len, size_t avail, int nb,
		       long (*xfer)(void *ctx, size_t len), void *ctx);
long hb_frame_xfer_in(struct hb_conn *c, int fd, size_t len, int nb,
		      long (*xfer)(void *ctx, size_t len), void *ctx);
/* The last fd of a framed connection is being closed: drop control frames
 * waiting unread so that the close sends a FIN, not a reset. */
void hb_frame_close(struct hb_conn *c, int fd);
/* close() of the last fd of a framed connection: keep the socket open on
 * a private, close-on-exec duplicate for a short while after the FIN, to
 * absorb heartbeats the peer sent before it saw the FIN (an orphaned socket
 * would answer them with a reset that destroys our unsent data). Returns 1
 * when the connection now lingers (the caller still closes fd). */
int hb_frame_linger(struct hb_conn *c, int fd);
/* Background step of a lingering connection: returns the next due time or
 * 0 when the private fd should now be closed. */
uint64_t hb_frame_linger_tick(struct hb_conn *c, int fd, uint64_t now);
/* Library destructor: wait (bounded by the timeout) until framed
 * connections have their queued data acknowledged. */
void hb_frame_at_exit(void);
/* Close every lingering private fd (fork child). */
void hb_frame_linger_drop_all(void);
/* The application calls shutdown(how): a half-close frame before our FIN
 * when it keeps reading; the read side's shutdown is held back while our
 * data is unacknowledged. Returns the how for the kernel now, or -1 for
 * nothing now. */
int hb_frame_shutdown(struct hb_conn *c, int fd, int how);
/* FIONREAD on a framed connection: application bytes readable. */
int hb_frame_inq(struct hb_conn *c, int fd, int *out);
/* Background step for a framed connection: hello, heartbeat, liveness,
 * draining control frames. Returns the next due time (ms) or 0 when the
 * connection needs no more timers. late: how far past its due time this
 * tick runs (a starved thread). Background thread, fd pinned. */
uint64_t hb_frame_tick(struct hb_conn *c, int fd, uint64_t now, uint64_t late);
/* fork: mark framed connections in the parent (prepare) and the child. */
void hb_frame_atfork_prepare(void);
void hb_frame_atfork_child(void);
/* Another process holds c now (fork, vfork, posix_spawn): this one leaves
 * the stream alone for a moment, and its close touches nothing until it
 * uses the connection again. */
void hb_frame_mark_shared(struct hb_conn *c, uint64_t now);
/* Send a notice frame (reason HB_NR_*) if our direction is framed and at a
 * frame boundary; never blocks. Background thread. */
void hb_frame_notice(struct hb_conn *c, int fd, uint8_t reason, uint32_t silent_ms);
/* This process is about to stop framing c (reason HB_DR_*: a seccomp filter
 * comes next). Sends our downgrade frame with the request flag when the
 * peer can take it, and hands the peer's framed direction to the leaving
 * reader (downgrade.c). Application thread, before the filter. */
void hb_frame_leave(struct hb_conn *c, int fd, uint8_t reason);
/* The application sends fd to another process (SCM_RIGHTS): leave framing
 * both ways first (our downgrade frame with the request, then the peer's
 * frames up to its answer, within HBSHIM_TIMEOUT), so that the receiver
 * gets a raw stream. Application thread, before the real sendmsg. */
void hb_frame_pass(struct hb_conn *c, int fd);

/* ------------------------------------------------------------------ downgrade.c */

/* The record of connections downgraded by a process of this fork family:
 * a small shared mapping made at start-up, inherited by fork (not exec). */
void hb_dg_init(void);
void hb_dg_publish(uint64_t cookie);
int hb_dg_published(uint64_t cookie);
/* Decode fd's framed direction from state rx with read() alone until the
 * peer's downgrade frame, then pass through: for a process that stepped
 * aside (seccomp). 0 or -ENOSPC. */
int hb_dg_leave_reader(int fd, const struct hb_rx *rx);
/* The name of a downgrade reason for events and logs. */
const char *hb_dg_reason_name(uint8_t reason);
/* Keepalive settings used as a backstop on framed connections
 * (keepalive.c, filled by hb_ka_init). */
extern struct hb_ka hb_ka_frame_cfg;
/* frame.c's entry points for the background thread (hb_thread_set_frame_ops). */
extern const struct hb_frame_ops hb_frame_ops;

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

/* inherit_parse.c (pure): one entry of HBSHIM_INHERIT. */
struct hb_inherit_ent {
	int fd;
	uint64_t cookie; /* never 0 */
	uint8_t rxmode, txmode, client, hello_sent, peer_dg;
	struct hb_rx rx; /* remaining, hdr, hdr_len, halfclosed: hb_rx_state_valid */
	struct hb_tx tx; /* remaining, pend, pend_len */
	uint32_t peer_interval_ms, peer_timeout_ms;
};
/* Parse the entry at s (up to ';' or the end) into *e: 0, or -EINVAL when
 * it is malformed or holds a value no connection of ours can have (e is
 * then zeroed). *next is set in both cases to the next entry (past the
 * ';') or to the terminating NUL. */
int hb_inherit_parse(const char *s, struct hb_inherit_ent *e, const char **next);

/* ------------------------------------------------------------------ i_stdio.c */

/* After the import: stdin/stdout/stderr on an inherited framed fd go
 * through our read and write. */
void hb_stdio_adopt(void);
/* fclose(fp): 1 if fp was adopted (now released), else 0. */
int hb_stdio_release(void *fp);
/* Flush the adopted output streams (exit, before the framed exit wait). */
void hb_stdio_flush(void);

/* ------------------------------------------------------------------ i_fdopen.c */

/* Flush our fdopen output streams no other thread holds (exit, before the
 * framed exit wait). */
void hb_fdopen_flush(void);

/* ------------------------------------------------------------------ thread.c */

/* What the background thread calls for framed connections. frame.c fills
 * hb_frame_ops and init.c registers it once, before any connection exists,
 * so thread.c names no protocol file (the dependency points down). Each
 * member has the contract of the frame.c function it names. Until one is
 * registered the thread treats framed connections as settled (no tick). */
struct hb_frame_ops {
	uint64_t (*tick)(struct hb_conn *c, int fd, uint64_t now, uint64_t late);
	uint64_t (*linger_tick)(struct hb_conn *c, int fd, uint64_t now);
	void (*notice)(struct hb_conn *c, int fd, uint8_t reason, uint32_t silent_ms);
	void (*atfork_prepare)(void);
	void (*atfork_child)(void);
	void (*linger_drop_all)(void);
};
void hb_thread_set_frame_ops(const struct hb_frame_ops *ops);
/* Hand c to the background thread (starting it on first use). Any app
 * thread; c must be installed. Never blocks. */
void hb_thread_schedule(struct hb_conn *c);
/* A scheduled connection's next step is due now (a deadline the background
 * thread did not know of when it last scheduled it). Any thread. */
void hb_thread_poke(struct hb_conn *c);
void hb_thread_ensure(void);
/* In the child of a raw clone (no fork handlers ran) that found it has
 * memory of its own: what the fork child handlers do (connections marked
 * INHERITED and SHARED, no background thread yet). own_files: the child
 * has an fd table of its own (no CLONE_FILES), so the lingering duplicates
 * are its copies to close; else they leave its table unclosed.
 * Single-threaded. */
void hb_thread_after_clone(int own_files);
extern _Atomic uint32_t hb_thread_tid;
/* Wake the background thread (reap pressure). Async-signal-safe. */
void hb_thread_wake(void);

/* ------------------------------------------------------------------ deadline.c */

/* Why a peer was declared dead. */
enum hb_dead_reason {
	HB_DEAD_KEEPALIVE, /* a call failed ETIMEDOUT: the kernel's keepalive or user timeout */
	HB_DEAD_IDLE,      /* HBSHIM_IDLE_TIMEOUT: no application data either way */
	HB_DEAD_HEARTBEAT, /* framed: the peer silent for longer than our timeout */
	HB_DEAD_WRITE,     /* data in flight, nothing acknowledged for the user timeout */
	HB_DEAD_NREASONS
};
/* What declaring dead does for a reason. */
struct hb_dead_policy {
	const char *name; /* the event's and the counter's "reason" */
	int stat;         /* HB_ST_DEAD_*: the counter */
	int err;          /* the errno the application's calls answer from now on */
	int by_kernel;    /* the kernel ended the connection: no shutdown of ours */
};
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
/* The application's connect, the next definition of connect(2). */
typedef int hb_connect_fn(int fd, const struct sockaddr *sa, socklen_t len);
/* A blocking connect bounded by HBSHIM_CONNECT_TIMEOUT: next_connect made
 * non-blocking, a poll, the blocking flag restored; at the deadline the
 * attempt is dissolved, the event written and ETIMEDOUT returned. A
 * non-blocking socket goes straight to next_connect. Returns like connect().
 * App thread, inside the connect interposer. */
int hb_connect_bounded(int fd, struct hb_conn *c, const struct sockaddr *sa, socklen_t len,
		       hb_connect_fn *next_connect);

/* How a framed connection tells its peer why it dies (hb_frame_ops.notice). */
typedef void hb_notice_fn(struct hb_conn *c, int fd, uint8_t reason, uint32_t silent_ms);
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

/* ------------------------------------------------------------------ events.c */

/* One field of an event line: key and a string value (JSON-escaped), or,
 * str NULL, an unsigned number. */
struct hb_ev_field {
	const char *key;
	const char *str;
	uint64_t num;
};
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
/* Note what fd 2 is at load (init.c, before anything is logged). */
void hb_out_init(void);
/* pthread_atfork handlers (registered by init.c). */
void hb_out_atfork_prepare(void);
void hb_out_atfork_parent(void);
void hb_out_atfork_child(void);

/* ------------------------------------------------------------------ stats.c */

/* Render the Prometheus text exposition into b. */
void hb_stats_render(struct hb_buf *b);
/* Write HBSHIM_STATS atomically (tmp + rename). Any thread. */
void hb_stats_flush(void);

/* ------------------------------------------------------------------ fault_io.c */

/* Fault injection at run time (HBSHIM_FAULTS). Nothing here runs unless
 * rules are configured: the interposers test c->fault (one atomic load).
 * All functions: app threads, return 0 / count or -errno. */
struct hb_fstate;
/* Connect faults, before the real connect: 0 to go on (after a "delay"
 * slept, or with *sa replaced by a private loopback address: one that never
 * answers for "timeout", a closed port for "refuse"), 1 to go on and report
 * a connect that completes at once as EINPROGRESS (a non-blocking connect
 * under "delay": in progress until the delay is over), or -errno to fail
 * the connect with (errno, EALREADY while a delay is on). */
int hb_fault_connect(int fd, struct hb_conn *c, const struct sockaddr **sa, socklen_t *len);
/* Bind the rules matching this connection (side, peer) to c. */
void hb_fault_bind(int fd, struct hb_conn *c, const struct sockaddr *peer, socklen_t peerlen,
		   int accepted);
/* The undisturbed call below the faults (framed or raw), count or -errno. */
typedef long (*hb_fault_next_fn)(struct hb_conn *c, int fd, struct msghdr *m, int flags);
/* Application receive / send through the bound rules. *injected is set
 * when the result is the fault's own (not the kernel's), so the caller
 * does not take it for a dead peer. */
long hb_fault_recv(struct hb_conn *c, int fd, struct msghdr *m, int flags, hb_fault_next_fn next,
		   int *injected);
long hb_fault_send(struct hb_conn *c, int fd, const struct msghdr *m, int flags,
		   hb_fault_next_fn next, int *injected);
/* poll/ppoll and select/pselect on a process with rules: a socket whose
 * data is held back (latency, bandwidth, hang) is not reported readable
 * until its release; the wait is cut at that time (and at a timed
 * trigger) and made again. inner is the interposer's own call. */
int hb_fault_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask,
		   int (*inner)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *));
int hb_fault_pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
		     const sigset_t *mask,
		     int (*inner)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
				  const sigset_t *));
/* epoll_wait and kin on a process with rules: reports of what is held
 * back are withdrawn and their registrations parked until the release
 * (fault_poll.c). inner waits at most ns (-1: no timeout). */
int hb_fault_epoll(int epfd, struct epoll_event *evs, int max, int64_t timeout_ns,
		   int (*inner)(int, struct epoll_event *, int, int64_t, void *), void *arg);
/* Around the application's epoll_ctl in a process with rules: its
 * registration of (epfd, fd) replaces a parked one, and is recorded (ok:
 * the call succeeded). begin returns what end takes as locked. */
int hb_fault_epoll_ctl_begin(int epfd, int fd);
void hb_fault_epoll_ctl_end(int locked, int ok, struct hb_conn *c, int epfd, int op, int fd,
			    const struct epoll_event *ev);
/* Live control: rules switched off and triggered by name. Defined here,
 * written by fault_ctl.c's control thread, read by the paths above. */
extern _Atomic uint8_t hb_fault_off[HB_MAX_FAULTS];
extern _Atomic uint32_t hb_fault_kick[HB_MAX_FAULTS];
/* A hang rule holds c now: its heartbeats stop too. Background thread. */
int hb_fault_hung(struct hb_conn *c);
/* The names of the rules bound to a connection, comma-separated. */
void hb_fault_rule_names(struct hb_fstate *st, struct hb_buf *out);
/* Serve HBSHIM_CONTROL (a UNIX socket, mode 0600, same-user peers only) on
 * a thread of its own. Constructor, after the configuration. */
void hb_fault_ctl_start(void);
/* One control command line into out; returns 0 (ok) or -EINVAL. Any
 * thread (the control thread; unit tests). */
int hb_fault_ctl_exec(const char *cmd, struct hb_buf *out);
static inline struct hb_fstate *hb_fault_of(struct hb_conn *c)
{
	return hb_load_relaxed(&c->fault);
}

/* ------------------------------------------------------------------ init.c */

/* Idempotent lazy init (binds symbols, parses config). */
void hb_init(void);

#endif
