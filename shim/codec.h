/*
 * codec.h - the hbshim wire format (docs/PROTOCOL.md), as pure functions.
 *
 * No syscalls, no logging, no allocation: linked into the library, the unit
 * tests and the fuzz targets alike.
 */
#ifndef HB_CODEC_H
#define HB_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HB_MAGIC0 0xE5
#define HB_MAGIC1 0x48 /* 'H' */
#define HB_MAGIC2 0x42 /* 'B' */
#define HB_MAGIC3 0x53 /* 'S' */
#define HB_HELLO_LEN 14
#define HB_PROTO_VERSION 1

#define HB_FT_CONTROL 0x00
#define HB_FT_DATA 0x01
#define HB_CT_HEARTBEAT 0x01
#define HB_CT_HALFCLOSE 0x02
#define HB_CT_NOTICE 0x03
#define HB_CT_DOWNGRADE 0x04

#define HB_DATA_HDR_LEN 5
#define HB_NOTICE_LEN 7
/* 00 04 RR FF 00: the direction is raw after these bytes. As long as a data
 * header, so that a reader that reads a header's worth of bytes at a frame
 * boundary never gets raw bytes behind it in its header area. */
#define HB_DOWNGRADE_LEN 5
#define HB_HDR_MAX 7
#define HB_MAX_FRAME (1u << 24) /* largest data payload: 16 MiB */

/* Hello flags. A version-1 receiver ignores the bits it does not know. */
#define HB_HF_PACED 0x01 /* the sender follows hb_pace_interval (below) */
#define HB_HF_DOWNGRADE 0x02 /* the sender decodes downgrade frames (00 04) */

/* Downgrade frame flags (its FF byte). */
#define HB_DF_REQUEST 0x01 /* the sender asks the receiver to go raw too */

/* Downgrade reasons (its RR byte). */
enum { HB_DR_SECCOMP = 1, HB_DR_FDPASS = 2, HB_DR_HELLO = 3, HB_DR_SHARED = 4, HB_DR_ANSWER = 5 };

/* The range of the hello's values; anything outside is a protocol error. */
#define HB_HELLO_INTERVAL_MAX 3600000u /* 1 h */
#define HB_HELLO_TIMEOUT_MAX 86400000u /* 24 h */

/* Pacing: a sender heartbeats at least every peer timeout / HB_PACE_DIV, but
 * never more often than every HB_PACE_FLOOR_MS because of a peer's hello. */
#define HB_PACE_DIV 3
#define HB_PACE_FLOOR_MS 100u

/* Notice reasons. */
enum { HB_NR_HEARTBEAT = 1, HB_NR_IDLE = 2, HB_NR_WRITE = 3, HB_NR_PROTOCOL = 4 };

_Static_assert(HB_HELLO_LEN == 4 + 1 + 1 + 4 + 4, "hello layout");

struct hb_hello {
	uint8_t version;
	uint8_t flags;
	uint32_t interval_ms;
	uint32_t timeout_ms;
};

/* Encode a hello into out (HB_HELLO_LEN bytes); returns HB_HELLO_LEN. */
size_t hb_hello_encode(uint8_t *out, const struct hb_hello *h);

/* Classify the first n bytes of a stream:
 *   1  a complete hello of a supported version (parsed into *h, if non-NULL);
 *   0  a strict prefix of the magic or of a hello: more bytes are needed;
 *  -1  not hbshim (raw stream);
 *  -2  hbshim magic with an unsupported version (protocol error);
 *  -3  a complete hello whose interval_ms is outside 1..HB_HELLO_INTERVAL_MAX
 *      or whose timeout_ms is outside 1..HB_HELLO_TIMEOUT_MAX (protocol
 *      error; *h is left untouched). */
int hb_hello_classify(const uint8_t *p, size_t n, struct hb_hello *h);

/* The heartbeat interval a sender uses toward a peer whose hello announced
 * peer_timeout_ms (0: no hello yet): its own interval, shortened to
 * peer_timeout_ms / HB_PACE_DIV so that an idle sender is never silent for
 * as long as the peer tolerates, but never below HB_PACE_FLOOR_MS on the
 * peer's account (own intervals below the floor stay as configured). */
uint32_t hb_pace_interval(uint32_t own_interval_ms, uint32_t peer_timeout_ms);

/* Receive-side decoder state: at most one partial frame header. */
/* Packed to 20 bytes: it lives in every connection (hb.h). */
#define HB_LAST_LEN_MAX ((1u << 24) - 1)
struct hb_rx {
	uint32_t remaining;       /* payload bytes left in the current data frame */
	uint32_t notice_silent_ms;
	uint32_t last_len : 24;   /* length of the last data frame begun, at most
				     HB_LAST_LEN_MAX (a guess at the next) */
	uint32_t notice_reason : 8; /* last notice reason, 0 = none */
	uint8_t hdr[HB_HDR_MAX];  /* partial header bytes */
	uint8_t hdr_len : 3;      /* 0..HB_HDR_MAX */
	uint8_t halfclosed : 1;   /* peer sent a half-close frame */
	uint8_t raw : 1;          /* peer sent a downgrade frame: the rest is raw */
};
_Static_assert(HB_HDR_MAX < 8, "hdr_len is 3 bits");

/* What one decode step saw besides application bytes. */
struct hb_rx_info {
	uint32_t heartbeats;
	uint32_t controls; /* control frames of any kind */
	uint8_t downgrade;  /* 1: a downgrade frame was decoded, with: */
	uint8_t dg_reason;  /* its reason (HB_DR_*, any value accepted) */
	uint8_t dg_flags;   /* its flags (HB_DF_*) */
};

/* Decode buf[0..len) in place: headers are consumed, application payload is
 * compacted to the start of buf. After a downgrade frame (st->raw) every
 * byte is application data, passed through. Returns the number of
 * application bytes (>= 0) or -EPROTO (unknown type or control code, a data
 * frame or a downgrade frame after a half-close frame) / -EMSGSIZE (length 0 or above HB_MAX_FRAME). After an
 * error st is unusable. */
ssize_t hb_rx_decode(struct hb_rx *st, uint8_t *buf, size_t len, struct hb_rx_info *info);

/* 1 when st is a state hb_rx_decode can leave behind (a partial header
 * only between frames, shorter than its complete length; a payload count
 * within HB_MAX_FRAME): state from outside (HBSHIM_INHERIT) must pass this
 * before the decoder runs on it. Pure. */
int hb_rx_state_valid(const struct hb_rx *st);

/* The read path's shortcut: st at a frame boundary and not half-closed, hdr
 * a complete data header, followed by `payload` bytes that all belong to that frame. Then st
 * is left as hb_rx_decode would leave it and 1 is returned; otherwise 0 and
 * st is untouched (run hb_rx_decode). Pure. */
int hb_rx_data_fast(struct hb_rx *st, const uint8_t *hdr, size_t payload);

/* 1 when st sits exactly on a frame boundary. */
static inline int hb_rx_at_boundary(const struct hb_rx *st)
{
	return st->remaining == 0 && st->hdr_len == 0;
}

/* Transmit-side state of a framed direction. */
#define HB_TX_PEND_MAX 15 /* a hello (14) or a header's tail; 20 bytes in all */
_Static_assert(HB_TX_PEND_MAX >= HB_HELLO_LEN && HB_TX_PEND_MAX >= HB_NOTICE_LEN, "pend too small");
struct hb_tx {
	uint32_t remaining;          /* payload bytes still owed to the open data frame */
	uint8_t pend[HB_TX_PEND_MAX];/* control bytes built but not yet sent (hello, header) */
	uint8_t pend_len;
};

static inline int hb_tx_at_boundary(const struct hb_tx *st)
{
	return st->remaining == 0 && st->pend_len == 0;
}

/* Encode a data frame header for a payload of len (1..HB_MAX_FRAME). */
size_t hb_data_hdr(uint8_t *out, uint32_t len);
/* Encode a notice frame; returns HB_NOTICE_LEN. */
size_t hb_notice_encode(uint8_t *out, uint8_t reason, uint32_t silent_ms);
/* Encode a downgrade frame (reason HB_DR_*, flags HB_DF_*); returns
 * HB_DOWNGRADE_LEN. */
size_t hb_downgrade_encode(uint8_t *out, uint8_t reason, uint8_t flags);

/* Plan one send of n application bytes: fills up to 4 segments
 * (pending header bytes, owed payload, new header, its payload) and returns
 * the number of segments. A new frame carries at most HB_MAX_FRAME bytes, so
 * the plan may cover fewer than n application bytes. hdr is scratch for the new header. The plan does
 * not change st; hb_tx_commit does, given how many bytes the kernel took. */
struct hb_tx_seg {
	const uint8_t *base; /* NULL: application bytes at offset off */
	size_t off;
	size_t len;
};
int hb_tx_plan(const struct hb_tx *st, size_t n, uint8_t *hdr, struct hb_tx_seg seg[4]);
/* Account sent bytes of a plan; returns how many application bytes went out. */
size_t hb_tx_commit(struct hb_tx *st, const struct hb_tx_seg seg[4], int nseg, size_t sent);

#endif
