/*
 * epollmap.c - which fd an epoll report stands for: the registrations of
 * tracked sockets, recorded by the epoll_ctl interposer (i_poll.c) and read
 * by the epoll_wait filter (i_epoll.c).
 *
 * An epoll report carries the application's epoll_data, not the fd. Every
 * successful epoll_ctl on a tracked socket (before it turns framed too: an
 * accepted socket is often registered before its peer's hello arrives) is
 * recorded here as (epfd, data) -> (fd, events, connection identity). The
 * map is bounded (ENTS slots, allocated on first use); a registration that
 * does not fit is simply not recorded, and its reports pass unfiltered.
 *
 * A wrong answer would withdraw another fd's report (a lost wake-up), so an
 * answer is given only when nothing contradicts it:
 *   - the connection behind fd must still be the one registered (the fd
 *     closed and reused fails that);
 *   - two registrations seen with one data value in one set mark the entry
 *     ambiguous, for good (epoll_ctl of untracked fds is watched for this
 *     once the map holds anything);
 *   - registrations made before the entry existed, by fds the shim does not
 *     track, are invisible to the watch: before an entry is first used to
 *     withdraw a report, the kernel's own list of the set
 *     (/proc/self/fdinfo/EPFD) must show exactly one registration with that
 *     data, under that fd (hb_epmap_check_set). One reading of the list
 *     settles every new entry of the set at once; the readings of the
 *     process take turns and pause after each in proportion to its size
 *     (CHECK_RATE bytes per ms: a set of a few fds is read again at once, one
 *     of 10,000 after a second); a list past CHECK_MAX bytes settles
 *     nothing. The work stays bounded however large the set. Without /proc
 *     the set's entries are ambiguous.
 * Not seen: registrations made through another descriptor of the same
 * epoll set (a dup of epfd, or a process sharing it after fork).
 *
 * One spinlock covers the map; it is held for a few slot compares, never
 * across a system call. A thread that cannot take it in a bounded time
 * (a signal handler interrupting the holder) leaves the map off for good:
 * reports then pass unfiltered, as before the map existed.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>

#include "hb.h"

#define ENTS 16384 /* registrations recorded at most */
#define WAYS 8     /* slots per bucket */
#define BUCKETS (ENTS / WAYS)
#define CHECK_RATE 1000           /* fdinfo bytes read per ms, on average, at most */
#define CHECK_MAX (16u << 20)     /* bytes of one fdinfo read at most */

enum { ST_NEW = 0, ST_VERIFIED = 1, ST_AMBIG = 2 };

struct ent {
	int epfd1;       /* epfd + 1; 0 = free */
	int fd;
	uint64_t data;   /* the application's epoll_data */
	uint32_t events; /* as registered (EPOLLONESHOT re-arms with them) */
	uint32_t self, gen; /* the connection's identity at registration */
	uint32_t ver;    /* bumped on every change of the slot */
	uint32_t state;  /* ST_* */
	uint32_t seq;    /* ctl_seq when recorded */
	uint32_t pass, seen, match; /* fdinfo reading: its number, lines with data, one of them fd's */
};

struct map {
	struct ent ents[ENTS];      /* bucketed by (epfd, data) */
	uint32_t byfd[ENTS];        /* slot + 1, bucketed by (epfd, fd); 0 = free */
};

_Atomic int hb_epmap_used;          /* something was recorded: watch every epoll_ctl */
static _Atomic(struct map *) map_p; /* allocated on first record */
static _Atomic int map_off;         /* the lock could not be taken: filtering off */
static _Atomic int lk;
static uint32_t ctl_seq, pass_seq;  /* under lk */
static _Atomic uint64_t next_check_ms; /* no reading before; UINT64_MAX: one runs */

/* 1 with the lock held; 0 (and the map off for good) when it stays taken:
 * the holder was interrupted by a signal handler that calls epoll here, or
 * this is the child of a fork that found it taken. */
static int lock_map(void)
{
	for (int i = 0; i < 4000; i++) {
		int z = 0;

		if (!hb_load_relaxed(&lk) && hb_cas_strong_acq_rel(&lk, &z, 1))
			return 1;
		if (i < 200)
			hb_cpu_relax();
		else
			hb_os_sleep_us(5);
	}
	hb_store_release(&map_off, 1);
	return 0;
}

static void unlock_map(void)
{
	hb_store_release(&lk, 0);
}

static uint32_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return (uint32_t)x;
}

static struct ent *bucket_data(struct map *m, int epfd, uint64_t data)
{
	return &m->ents[(mix(data ^ ((uint64_t)(unsigned)epfd << 40)) % BUCKETS) * WAYS];
}

static uint32_t *bucket_fd(struct map *m, int epfd, int fd)
{
	return &m->byfd[(mix(((uint64_t)(unsigned)epfd << 32) | (unsigned)fd) % BUCKETS) * WAYS];
}

/* The registration no longer belongs to the connection it was made for. */
static int stale(const struct ent *e)
{
	struct hb_conn *c = hb_fd_conn(e->fd);

	return !c || c->self != e->self || hb_load_acquire(&c->gen) != e->gen;
}

static struct ent *find_data(struct map *m, int epfd, uint64_t data)
{
	struct ent *b = bucket_data(m, epfd, data);

	for (int i = 0; i < WAYS; i++)
		if (b[i].epfd1 == epfd + 1 && b[i].data == data)
			return &b[i];
	return NULL;
}

static uint32_t *find_fd(struct map *m, int epfd, int fd)
{
	uint32_t *b = bucket_fd(m, epfd, fd);

	for (int i = 0; i < WAYS; i++) {
		struct ent *e = b[i] ? &m->ents[b[i] - 1] : NULL;

		if (e && e->epfd1 == epfd + 1 && e->fd == fd)
			return &b[i];
	}
	return NULL;
}

static void drop(struct map *m, struct ent *e)
{
	uint32_t *x = find_fd(m, e->epfd1 - 1, e->fd);

	if (x && *x == (uint32_t)(e - m->ents) + 1)
		*x = 0;
	e->epfd1 = 0;
	e->ver++;
}

/* A free slot in each index (evicting stale registrations), or NULL. */
static struct ent *insert(struct map *m, int epfd, int fd, uint64_t data)
{
	struct ent *b = bucket_data(m, epfd, data), *e = NULL;
	uint32_t *f = bucket_fd(m, epfd, fd), *x = NULL;

	for (int i = 0; i < WAYS && !e; i++)
		if (!b[i].epfd1)
			e = &b[i];
	for (int i = 0; i < WAYS && !e; i++)
		if (stale(&b[i])) {
			drop(m, &b[i]);
			e = &b[i];
		}
	if (!e)
		return NULL;
	for (int i = 0; i < WAYS && !x; i++)
		if (!f[i])
			x = &f[i];
	for (int i = 0; i < WAYS && !x; i++)
		if (stale(&m->ents[f[i] - 1])) {
			drop(m, &m->ents[f[i] - 1]);
			x = &f[i];
		}
	if (!x)
		return NULL;
	*x = (uint32_t)(e - m->ents) + 1;
	e->epfd1 = epfd + 1;
	e->fd = fd;
	e->data = data;
	e->ver++;
	return e;
}

static struct map *get_map(int create)
{
	struct map *m = hb_load_acquire(&map_p), *z = NULL;

	if (m || !create)
		return m;
	m = hb_os_mmap(sizeof(*m));
	if (!m)
		return NULL;
	if (!hb_cas_strong_acq_rel(&map_p, &z, m))
		return z; /* another thread won; ours stays unused (rare, once) */
	return m;
}

void hb_epmap_ctl(struct hb_conn *c, int epfd, int op, int fd, const struct epoll_event *ev)
{
	struct map *m;
	struct ent *e;
	uint32_t *x;
	uint64_t data = ev ? ev->data.u64 : 0;

	if (hb_load_relaxed(&map_off) || epfd < 0 || fd < 0 || epfd == fd)
		return;
	/* Only what is or may become framed is recorded: not a listener, not
	 * a keepalive-mode socket, not a socket before connect without a
	 * framing rule; with fault rules, every connection (fault_poll.c). */
	if (c && (c->kind == HB_KIND_LISTENER || !hb_enabled ||
		  (!hb_cfg.nfaults && (c->mode == HB_MODE_KEEPALIVE ||
				       (c->mode == HB_MODE_NONE && !hb_cfg.nrules)))))
		c = NULL;
	if (!(m = get_map(c && op != EPOLL_CTL_DEL)))
		return;
	if (!lock_map())
		return;
	/* This fd's registration in the set, if one is recorded: replaced. */
	x = find_fd(m, epfd, fd);
	if (x && (op == EPOLL_CTL_DEL || !c || m->ents[*x - 1].data != data ||
		  op == EPOLL_CTL_ADD)) {
		drop(m, &m->ents[*x - 1]);
		x = NULL;
	}
	if (op == EPOLL_CTL_DEL || !ev)
		goto out;
	if (x) {
		/* MOD with the same data: the rest of the set is unchanged. */
		e = &m->ents[*x - 1];
		e->events = ev->events;
		e->ver++;
		goto out;
	}
	e = find_data(m, epfd, data);
	if (e && stale(e)) {
		drop(m, e);
		e = NULL;
	}
	if (e) {
		/* Two fds with one data value: no report of it can be told
		 * apart; both entries stay, ambiguous. */
		e->state = ST_AMBIG;
		e->ver++;
	}
	if (!c)
		goto out;
	{
		int ambig = e != NULL;

		if (!(e = insert(m, epfd, fd, data)))
			goto out;
		e->events = ev->events;
		e->self = c->self;
		e->gen = hb_load_acquire(&c->gen);
		e->state = ambig ? ST_AMBIG : ST_NEW;
		e->seq = ++ctl_seq;
		e->pass = 0;
	}
	hb_store_relaxed(&hb_epmap_used, 1);
out:
	unlock_map();
}

int hb_epmap_find(int epfd, uint64_t data, struct hb_epreg *out)
{
	struct map *m = hb_load_acquire(&map_p);
	struct ent *e;
	int ok = 0;

	if (!m || hb_load_relaxed(&map_off) || !lock_map())
		return 0;
	e = find_data(m, epfd, data);
	if (e && e->state != ST_AMBIG) {
		out->fd = e->fd;
		out->data = e->data;
		out->events = e->events;
		out->self = e->self;
		out->gen = e->gen;
		out->ver = e->ver;
		out->verified = e->state == ST_VERIFIED;
		ok = 1;
	}
	unlock_map();
	return ok;
}

/* Parse an unsigned number in base 10 or 16 at *p, skipping blanks first. */
static uint64_t num(const char **p, const char *end, int base)
{
	uint64_t v = 0;
	const char *s = *p;

	while (s < end && *s == ' ')
		s++;
	for (; s < end; s++) {
		int d = *s >= '0' && *s <= '9'   ? *s - '0'
			: *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
						 : 99;

		if (d >= base)
			break;
		v = v * (uint64_t)base + (uint64_t)d;
	}
	*p = s;
	return v;
}

/* One line of the set's fdinfo: "tfd: %8d events: %8x data: %16llx ...".
 * 1 and its fd and data, or 0 for another line. */
static int fdinfo_line(const char *s, size_t n, int *fd, uint64_t *data)
{
	const char *end = s + n, *p;
	uint64_t tfd;

	if (n < 5 || memcmp(s, "tfd:", 4))
		return 0;
	p = s + 4;
	tfd = num(&p, end, 10);
	for (; p + 5 <= end && memcmp(p, "data:", 5); p++)
		;
	if (p + 5 > end || tfd > INT32_MAX)
		return 0;
	p += 5;
	*data = num(&p, end, 16);
	*fd = (int)tfd;
	return 1;
}

#define LINES 64
struct reading {
	int epfd;
	uint32_t pass;
	int n;
	int fds[LINES];
	uint64_t datas[LINES];
};

/* Count the lines read so far against the entries they name. */
static void tally(struct map *m, struct reading *rd)
{
	if (!rd->n || !lock_map())
		return;
	for (int i = 0; i < rd->n; i++) {
		struct ent *e = find_data(m, rd->epfd, rd->datas[i]);

		if (!e)
			continue;
		if (e->pass != rd->pass) {
			e->pass = rd->pass;
			e->seen = e->match = 0;
		}
		e->seen++;
		if (e->fd == rd->fds[i])
			e->match = 1;
	}
	unlock_map();
	rd->n = 0;
}

/* Resolve the set's new entries recorded before the reading began: the only
 * line with its data, under its fd, or ambiguous (absent from the list
 * too: that number is another set now, or the registration is gone). */
static void resolve_new_entries(struct map *m, int epfd, uint32_t pass, uint32_t seq, int readable)
{
	if (!lock_map())
		return;
	for (uint32_t i = 0; i < ENTS; i++) {
		struct ent *e = &m->ents[i];

		if (e->epfd1 != epfd + 1 || e->state != ST_NEW || (int32_t)(e->seq - seq) > 0)
			continue;
		e->state = readable && e->pass == pass && e->seen == 1 && e->match ? ST_VERIFIED
										: ST_AMBIG;
		e->ver++;
	}
	unlock_map();
}

/* The reading itself; returns the bytes read or -errno. */
static long read_set(struct map *m, int epfd, size_t *total)
{
	char path[48], buf[4096], line[256];
	struct reading rd = { .epfd = epfd };
	struct hb_buf pb;
	uint32_t seq;
	size_t ll = 0;
	int f;
	long r;

	if (!lock_map())
		return -EAGAIN;
	rd.pass = ++pass_seq;
	seq = ctl_seq;
	unlock_map();
	hb_buf_init(&pb, path, sizeof(path));
	hb_buf_fmt(&pb, "/proc/self/fdinfo/%d", epfd);
	f = (int)hb_os_open(hb_buf_str(&pb), O_RDONLY | O_CLOEXEC, 0);
	if (f < 0) {
		resolve_new_entries(m, epfd, rd.pass, seq, 0);
		return f;
	}
	while ((r = hb_os_read(f, buf, sizeof(buf))) > 0 && (*total += (size_t)r) <= CHECK_MAX) {
		for (long i = 0; i < r; i++) {
			if (buf[i] != '\n') {
				if (ll < sizeof(line))
					line[ll++] = buf[i];
				continue;
			}
			if (fdinfo_line(line, ll, &rd.fds[rd.n], &rd.datas[rd.n]) && ++rd.n == LINES)
				tally(m, &rd);
			ll = 0;
		}
	}
	hb_os_close(f);
	if (r != 0)
		return r < 0 ? r : -E2BIG; /* a partial list settles nothing */
	if (fdinfo_line(line, ll, &rd.fds[rd.n], &rd.datas[rd.n]))
		rd.n++;
	tally(m, &rd);
	resolve_new_entries(m, epfd, rd.pass, seq, 1);
	return 0;
}

int hb_epmap_check_set(int epfd)
{
	struct map *m = hb_load_acquire(&map_p);
	uint64_t now = hb_os_now_ms(), next = hb_load_relaxed(&next_check_ms);
	size_t total = 0;
	long r;

	if (!m || hb_load_relaxed(&map_off) || epfd < 0)
		return -EINVAL;
	if (now < next || !hb_cas_strong_acq_rel(&next_check_ms, &next, UINT64_MAX))
		return -EAGAIN;
	r = read_set(m, epfd, &total);
	hb_store_release(&next_check_ms, hb_os_now_ms() + total / CHECK_RATE);
	return (int)r;
}
