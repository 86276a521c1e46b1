/*
 * hb_types.h - the data layouts of libhbshim.
 *
 * Every structure, flag word and index enum shared between files of shim/,
 * under the heading of the file that owns it (fills it, or defines its one
 * instance). Types only: no function is declared here and no inline code
 * calls out, so every file, the OS layer included, can include it. The
 * functions that work on these types are declared in hb_os.h (the OS
 * layer) and hb.h (the cross-file API).
 */
#ifndef HB_TYPES_H
#define HB_TYPES_H

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

/* ------------------------------------------------------------------ config.c, parse.c */

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

/* ------------------------------------------------------------------ config.c */

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

/* ------------------------------------------------------------------ fmt.c */

/* A bounded string builder over caller memory; never allocates, never
 * overflows (output is truncated), async-signal-safe. */
struct hb_buf {
	char *p;
	size_t len, cap;
};

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
	int (*system)(const char *);
	int (*clone)(int (*)(void *), void *, int, void *, ...);
	int (*capset)(void *, const void *);
};

/* ------------------------------------------------------------------ os.c */

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

/* ------------------------------------------------------------------ epollmap.c */

/* One recorded epoll registration (hb_epmap_find's answer): the fd behind
 * (epfd, data), whether the kernel's list confirmed it, and the connection
 * it named (self, gen) when recorded. */
struct hb_epreg {
	int fd, verified;
	uint64_t data;
	uint32_t events, self, gen, ver;
};

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
 * safely; gen tells whether it still is the connection one looked up.
 *
 * Who writes and who reads, per group of fields below. "app": application
 * threads inside an interposer; "bg": the background thread (thread.c and
 * what it calls: tick.c, keepalive.c, deadline.c, linger.c). A field that
 * is not _Atomic is written either before the connection is published in
 * the fd table, or by one thread at a time under the lock named.
 * _Static_assert in conn.c pins the size (bench/structsize.c prints it). */
struct hb_conn {
	/* Pool and fd table (conn.c, fdtable.c). refs: fdtable.c on install
	 * and forget (app); gen: conn.c bumps it when freeing (bg), everyone
	 * compares it; fds/fdgens: fdtable.c (app), read by fdtable.c's pin
	 * (bg) and epollmap.c. */
	_Atomic uint32_t refs;  /* fds referring to it; app threads */
	_Atomic uint32_t gen;   /* bumped when freed; bg writes, all read */
	/* HB_APP_* | HB_CF_* bits (above): set and cleared with atomic or/and
	 * by app threads and the background thread, read everywhere. */
	_Atomic uint32_t flags;
	/* 0 or the errno later calls fail with: set once (CAS from 0) by
	 * deadline.c's hb_conn_declare_dead (bg or app) or frame.c on a protocol
	 * error (app, rx lock); read by conn_io.c and the framed paths. */
	_Atomic int dead;
	_Atomic int fds[HB_CONN_FDS];       /* fds referring to it, -1 = none */
	_Atomic uint32_t fdgens[HB_CONN_FDS]; /* fd table generation of each fd */
	/* Identity, written before publication by the file that installs the
	 * connection (i_socket.c, inherit.c, linger.c) and read-only after;
	 * mode also changes in negotiate.c (rx lock) when both directions turn
	 * out raw, kind in i_socket.c on listen and connect (app). */
	uint64_t cookie;       /* SO_COOKIE at install; immutable afterwards */
	uint32_t self;         /* pool index + 1; immutable */
	uint8_t family;        /* AF_INET / AF_INET6 */
	uint8_t mode;          /* HB_MODE_* */
	uint8_t kind;          /* HB_KIND_* */
	/* An error (ECONNRESET...) a call of the shim's own took from the
	 * socket: stored by frame.c (app or bg), taken (exchanged with 0) by
	 * conn_io.c for the application's next call. */
	_Atomic uint8_t stolen_err;
	/* The application's SO_SNDTIMEO / SO_RCVTIMEO, 0 = none: written by
	 * i_socket.c's setsockopt and accept (app); read by deadline.c,
	 * frame_rx.c and fault_io.c. */
	_Atomic uint32_t sndtimeo_ms;
	_Atomic uint32_t rcvtimeo_ms;
	_Atomic(struct hb_fstate *) fault; /* fault rules bound at connect/accept
					      (fault_connect.c, app, once); NULL =
					      none, the only load the I/O paths pay */
	/* Links for the lock-free stacks (pool index + 1, 0 = end): written
	 * by the pusher (conn.c, any thread) before its CAS, read by the one
	 * taker (the background thread). */
	uint32_t free_next;    /* pool free list */
	uint32_t inbox_next;   /* app -> bg: schedule me */
	uint32_t reap_next;    /* app -> bg: last fd closed */
	uint32_t hb_sent_at;   /* bg (tick.c, txlock): our last heartbeat; kept only
				  once TCP_INFO came back short (hb_os_ti_short) */
	/* The timer wheel (wheel.c, thread.c): background thread only. */
	struct hb_conn *wprev, *wnext; /* timer wheel list */
	uint64_t wexpires;             /* due time, monotonic ms */
	/* Written by share.c when another process holds the connection (app,
	 * at fork) and by tick.c (bg); read by tick.c. */
	uint32_t forked_at;            /* parent of a fork: when HB_CF_FORKED was set; without
					  it, a reader's last look for other holders (ms32) */
	uint32_t rx_bytes;             /* bg (tick.c): tcpi_bytes_received (low bits) at the
					  last drain */
	/* Times, monotonic ms. opened_ms: written at install (i_socket.c at
	 * connect/accept, inherit.c, linger.c), read by the deadlines and the
	 * tick. last_app_ms: the framed receive and send paths (app, their
	 * lock) and linger.c; read by deadline.c's idle check (bg). */
	uint64_t opened_ms;            /* monotonic ms at install */
	uint64_t last_app_ms;          /* framed: last application byte either way */
	/* The peer's hello (negotiate.c under the rx lock, inherit.c at
	 * adoption); read by tick.c (bg). */
	uint32_t peer_interval_ms;     /* how often the peer heartbeats toward us:
					  its hello's interval, paced for our
					  timeout when it paces */
	uint32_t peer_timeout_ms;      /* its hello's timeout: we pace for it */
	/* Monotonic ms, low 32 bits (differences wrap correctly). */
	uint32_t shut_rd_at;           /* frame_tx.c (app): when the app asked for SHUT_RD
					  (HB_CF_SHUT_RD); read by tick.c */
	uint32_t bg_partial_at;        /* negotiate.c, bg: when it first saw only a magic
					  prefix; 0 = not yet */
	uint32_t partial_at;           /* negotiate.c, app (rxlock): the same */
	uint32_t drained_at;           /* frame_drain.c, tick.c (rxlock): control frames last
					  drained; 0 = never */
	/* keepalive.c's window check: background thread only. */
	uint32_t ka_ack_at;            /* the peer's last ACK, as of ka_owed_at */
	uint32_t ka_owed_at;           /* since when ours is unanswered after it, at the latest */
	uint32_t ka_wait_at;           /* data waits since (at the earliest); 0 = not waiting */
	_Atomic uint32_t ka_txw_at;    /* app (hb_ka_note_tx): when it set HB_CF_TXW; read by
					  thread.c (bg) */
	_Atomic uint32_t rx_seen;      /* tick.c: the shim last took bytes from the socket;
					  kept only once TCP_INFO came back short */
	/* Framed mode (frame_int.h). rxmode and rx change under rxlock, txmode
	 * and tx under txlock, by whichever thread holds it (app or bg); both
	 * are read without them by quick checks. Set at install by
	 * negotiate.c or inherit.c. */
	_Atomic uint8_t rxmode;        /* HB_RX_* */
	_Atomic uint8_t txmode;        /* HB_TX_* */
	uint8_t client;                /* we connected: our hello goes first; immutable */
	uint8_t hello_sent;            /* negotiate.c, under txlock */
	/* Downgrade to raw (PROTOCOL.md, Downgrade; downgrade.c, leave.c). */
	uint8_t peer_dg;               /* the peer's hello said it can downgrade (rx lock) */
	uint8_t dg_sent;               /* our downgrade frame is in tx.pend or out (txlock) */
	_Atomic uint8_t dg_want;       /* reason of a downgrade of our direction due at the
					  next frame boundary, 0 = none; set by leave.c and
					  downgrade.c, taken by the send side */
	uint8_t dg_left;               /* leave.c (app): this process left framing (seccomp):
					  handled once */
	uint8_t lowat;                 /* SO_RCVLOWAT we set, 0 = kernel default (rxlock) */
	uint8_t handed_undecided;      /* negotiate.c (rxlock): a hand-over went ahead with
					  the peer's direction undecided: no hello mark,
					  and later hand-overs do not wait for it */
	/* Background thread only (tick.c, thread.c). */
	uint8_t grace;                 /* one recheck granted after a late wakeup */
	uint8_t wlinked;               /* on a wheel list */
	uint8_t phase;                 /* what the next timer does (thread.c) */
	/* App threads inside the framed paths (frame_rx.c, frame_tx.c,
	 * frame_xfer.c count themselves in and out); the background thread
	 * frees the connection only at 0. */
	_Atomic uint32_t users;
	/* The two futex locks (os_lock.c): 0 free, else owner tid |
	 * HB_LOCK_WAITERS. Taken by app threads and the background thread. */
	_Atomic uint32_t rxlock;
	_Atomic uint32_t txlock;
	/* The codec's states (codec.h): rx under rxlock, tx under txlock. */
	struct hb_rx rx;
	struct hb_tx tx;
};

enum { HB_RX_RAW = 0, HB_RX_DETECT = 1, HB_RX_FRAMED = 2, HB_RX_FAILED = 3 };
enum { HB_TX_RAW = 0, HB_TX_UNDECIDED = 1, HB_TX_FRAMED = 2 };

/* The mode as users see it (events, stats, hbshim_fd_mode): c->mode is
 * HB_MODE_FRAME also while an accepted connection still waits to learn
 * whether its client speaks hbshim; until a direction is framed it is
 * keepalive mode. A pure accessor, kept with the layout so that the fd
 * table (which counts connections by mode) needs nothing from hb.h. */
static inline int hb_conn_public_mode(const struct hb_conn *c)
{
	if (c->mode == HB_MODE_FRAME && hb_load_relaxed(&c->rxmode) != HB_RX_FRAMED &&
	    hb_load_relaxed(&c->txmode) != HB_TX_FRAMED)
		return HB_MODE_KEEPALIVE;
	return c->mode;
}

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

/* ------------------------------------------------------------------ wheel.c */

/* The timer wheel (hb_wheel_*, hb.h); owned by the background thread. */
#define HB_WHEEL_L0_BITS 8
#define HB_WHEEL_LN_BITS 6
#define HB_WHEEL_LEVELS 5
struct hb_wheel {
	uint64_t now;    /* next tick to process (ms) */
	uint32_t count;  /* linked timers */
	struct hb_conn *l0[1u << HB_WHEEL_L0_BITS];
	struct hb_conn *ln[HB_WHEEL_LEVELS - 1][1u << HB_WHEEL_LN_BITS];
};

/* ------------------------------------------------------------------ keepalive.c */

/* Kernel keepalive settings derived from interval and timeout. */
struct hb_ka {
	int idle_s;           /* TCP_KEEPIDLE */
	int intvl_s;          /* TCP_KEEPINTVL */
	int cnt;              /* TCP_KEEPCNT */
	unsigned user_timeout_ms; /* TCP_USER_TIMEOUT */
	unsigned jitter_ms;   /* spread of the SO_KEEPALIVE switch-on time */
};

/* ------------------------------------------------------------------ inherit_parse.c */

/* One entry of HBSHIM_INHERIT (hb_inherit_parse). */
struct hb_inherit_ent {
	int fd;
	uint64_t cookie; /* never 0 */
	uint8_t rxmode, txmode, client, hello_sent, peer_dg;
	uint8_t app_rcvlowat; /* the socket's SO_RCVLOWAT is the application's */
	struct hb_rx rx; /* remaining, hdr, hdr_len, halfclosed: hb_rx_state_valid */
	struct hb_tx tx; /* remaining, pend, pend_len */
	uint32_t peer_interval_ms, peer_timeout_ms;
};

/* ------------------------------------------------------------------ thread.c */

/* What the background thread calls for framed connections. tick.c fills
 * hb_frame_ops and init.c registers it once, before any connection exists,
 * so thread.c names no protocol file (the dependency points down). Each
 * member has the contract of the hb_frame_* function it names (hb.h).
 * Until one is registered the thread treats framed connections as
 * settled (no tick). */
struct hb_frame_ops {
	uint64_t (*tick)(struct hb_conn *c, int fd, uint64_t now, uint64_t late);
	uint64_t (*linger_tick)(struct hb_conn *c, int fd, uint64_t now);
	void (*notice)(struct hb_conn *c, int fd, uint8_t reason, uint32_t silent_ms);
	void (*atfork_prepare)(void);
	void (*atfork_child)(void);
	void (*linger_drop_all)(void);
};

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
/* The application's connect, the next definition of connect(2). */
typedef int hb_connect_fn(int fd, const struct sockaddr *sa, socklen_t len);
/* How a framed connection tells its peer why it dies (hb_frame_ops.notice). */
typedef void hb_notice_fn(struct hb_conn *c, int fd, uint8_t reason, uint32_t silent_ms);

/* ------------------------------------------------------------------ events.c */

/* One field of an event line: key and a string value (JSON-escaped), or,
 * str NULL, an unsigned number. */
struct hb_ev_field {
	const char *key;
	const char *str;
	uint64_t num;
};

/* ------------------------------------------------------------------ fault_io.c */

/* The fault rules bound to one connection (private to the fault files). */
struct hb_fstate;

#endif
