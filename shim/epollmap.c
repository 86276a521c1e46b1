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
 *     track, are invisible to the watch: the first time an entry would be
 *     used to withdraw a report, the kernel's own list of the set
 *     (/proc/self/fdinfo/EPFD) must show exactly one registration with that
 *     data, under that fd (hb_epmap_verify). Without /proc the entry is
 *     ambiguous.
 * Not seen: registrations made through another descriptor of the same
 * epoll set (a dup of epfd, or a process sharing it after fork).
 *
 * One spinlock covers the map; it is held for a few slot compares, never
 * across a system call. A thread that cannot take it in a bounded time
 * (a signal handler interrupting the holder) leaves the map off for good:
 * reports then pass unfiltered, as before the map existed.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>

#include "hb.h"

#define ENTS 16384 /* registrations recorded at most */
#define WAYS 8     /* slots per bucket */
#define BUCKETS (ENTS / WAYS)

enum { ST_NEW = 0, ST_VERIFIED = 1, ST_AMBIG = 2 };

struct ent {
	int epfd1;       /* epfd + 1; 0 = free */
	int fd;
	uint64_t data;   /* the application's epoll_data */
	uint32_t events; /* as registered (EPOLLONESHOT re-arms with them) */
	uint32_t self, gen; /* the connection's identity at registration */
	uint32_t ver;    /* bumped on every change of the slot */
	uint32_t state;  /* ST_* */
};

struct map {
	struct ent ents[ENTS];      /* bucketed by (epfd, data) */
	uint32_t byfd[ENTS];        /* slot + 1, bucketed by (epfd, fd); 0 = free */
};

_Atomic int hb_epmap_used;          /* something was recorded: watch every epoll_ctl */
static _Atomic(struct map *) map_p; /* allocated on first record */
static _Atomic int map_off;         /* the lock could not be taken: filtering off */
static _Atomic int lk;

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
	if (c && (c->kind == HB_KIND_LISTENER || !hb_enabled))
		c = NULL; /* a listener's reports are never filtered */
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

void hb_epmap_verdict(int epfd, const struct hb_epreg *r, int unique)
{
	struct map *m = hb_load_acquire(&map_p);
	struct ent *e;

	if (!m || hb_load_relaxed(&map_off) || !lock_map())
		return;
	e = find_data(m, epfd, r->data);
	if (e && e->ver == r->ver && e->state == ST_NEW) {
		e->state = unique ? ST_VERIFIED : ST_AMBIG;
		e->ver++;
	}
	unlock_map();
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

/* One line of the set's fdinfo: "tfd: %8d events: %8x data: %16llx ...". */
static void fdinfo_line(const char *s, size_t n, uint64_t data, int fd, int *count, int *match)
{
	const char *end = s + n, *p;
	uint64_t tfd, d;

	if (n < 5 || memcmp(s, "tfd:", 4))
		return;
	p = s + 4;
	tfd = num(&p, end, 10);
	for (; p + 5 <= end && memcmp(p, "data:", 5); p++)
		;
	if (p + 5 > end)
		return;
	p += 5;
	d = num(&p, end, 16);
	if (d != data)
		return;
	(*count)++;
	if (tfd == (uint64_t)(unsigned)fd)
		*match = 1;
}

int hb_epmap_verify(int epfd, uint64_t data, int fd)
{
	char path[48], buf[4096], line[256];
	struct hb_buf pb;
	size_t ll = 0;
	int count = 0, match = 0, f;
	long r;

	hb_buf_init(&pb, path, sizeof(path));
	hb_buf_fmt(&pb, "/proc/self/fdinfo/%d", epfd);
	f = (int)hb_os_open(hb_buf_str(&pb), O_RDONLY | O_CLOEXEC, 0);
	if (f < 0)
		return 0;
	while ((r = hb_os_read(f, buf, sizeof(buf))) > 0) {
		for (long i = 0; i < r; i++) {
			if (buf[i] != '\n') {
				if (ll < sizeof(line))
					line[ll++] = buf[i];
				continue;
			}
			fdinfo_line(line, ll, data, fd, &count, &match);
			ll = 0;
		}
	}
	fdinfo_line(line, ll, data, fd, &count, &match);
	hb_os_close(f);
	return r == 0 && count == 1 && match;
}
