/*
 * hbshim.h - public interface of libhbshim.
 *
 * libhbshim is normally LD_PRELOAD-ed into an unmodified program and needs
 * no API at all. This header exists for three audiences:
 *   - programs that want to ask whether they run under hbshim (link
 *     -lhbshim-noop when the preload may be absent: every call then answers
 *     "not loaded");
 *   - peer implementations of the wire protocol (docs/PROTOCOL.md), which
 *     need the constants below;
 *   - tests.
 */
#ifndef HBSHIM_H
#define HBSHIM_H

#ifdef __cplusplus
extern "C" {
#endif

#define HBSHIM_VERSION_MAJOR 0
#define HBSHIM_VERSION_MINOR 1
#define HBSHIM_VERSION_PATCH 0
#define HBSHIM_VERSION_HEX \
	((HBSHIM_VERSION_MAJOR << 16) | (HBSHIM_VERSION_MINOR << 8) | HBSHIM_VERSION_PATCH)
#define HBSHIM_VERSION_STRING "0.1.0"

/* Wire protocol constants (docs/PROTOCOL.md). */
#define HBSHIM_PROTO_VERSION 1
#define HBSHIM_HEARTBEAT_0 0x00 /* heartbeat frame: exactly 0x00 0x01 */
#define HBSHIM_HEARTBEAT_1 0x01

/* Connection modes reported by hbshim_fd_mode(). */
#define HBSHIM_MODE_NONE 0      /* not tracked (not a TCP socket, or shim off) */
#define HBSHIM_MODE_KEEPALIVE 1 /* kernel keepalive + deadlines, stream untouched */
#define HBSHIM_MODE_FRAME 2     /* heartbeat frames on the wire */

/* Version of the loaded library as "MAJOR.MINOR.PATCH"; the no-op stub
 * returns the same string with "-noop" appended. */
const char *hbshim_version(void);

/* 1 when the real library is loaded and enabled, 0 otherwise (disabled by
 * HBSHIM_DISABLE=1, by a configuration error, or the no-op stub). */
int hbshim_active(void);

/* Mode of the connection behind fd (HBSHIM_MODE_*). Never fails: an unknown
 * fd answers HBSHIM_MODE_NONE. Async-signal-safe. */
int hbshim_fd_mode(int fd);

#ifdef __cplusplus
}
#endif
#endif
