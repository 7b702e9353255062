/*
 * multihome-shim: the CNI plugin binary of thick mode.
 *
 * The container runtime execs it on the host, where there may be no Python.
 * It holds no CNI logic: it forwards the CNI_* environment and stdin to the
 * multihome daemon over HTTP on a unix socket and prints the daemon's answer
 * with the exit code the daemon names.  The only errors it makes itself are
 * the ones the daemon cannot make: it is not reachable, or the local I/O
 * failed.  VERSION is the exception: the shim answers it itself, without
 * touching the daemon, as upstream's shim does (podman asks it before every
 * ADD).  The wire protocol is described in README.md next to this file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef SHIM_VERSION
#define SHIM_VERSION "dev"
#endif

#define STDIN_CAP ((size_t)16 << 20)
#define ANSWER_CAP ((size_t)64 << 20)
#define MAX_SECONDS 86400.0

enum { E_ENV = 4, E_IO = 5, E_CONFIG = 7, E_AGAIN = 11 };

/* The VERSION answer: the versions the daemon's engine speaks (multihome.cni.version,
 * the same text the thin plugin prints; tests/e2e/test_shim.py keeps them equal). */
static const char VERSION_ANSWER[] =
	"{\"cniVersion\": \"1.1.0\", \"supportedVersions\": [\"0.1.0\", \"0.2.0\", "
	"\"0.3.0\", \"0.3.1\", \"0.4.0\", \"1.0.0\", \"1.1.0\"]}";

extern char **environ;

/* A growable byte string.  Out of memory is sticky and checked once, at the end. */
struct buf {
	char *p;
	size_t len, cap;
	int oom;
};

static void put(struct buf *b, const void *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* Length of the well-formed UTF-8 sequence at s (Unicode table 3-7), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xBF;
	size_t len;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		len = 2;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		len = 3, lo = s[0] == 0xE0 ? 0xA0 : 0x80, hi = s[0] == 0xED ? 0x9F : 0xBF;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		len = 4, lo = s[0] == 0xF0 ? 0x90 : 0x80, hi = s[0] == 0xF4 ? 0x8F : 0xBF;
	else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	return len;
}

/*
 * A JSON string.  Bytes that are not UTF-8 cannot be said in JSON; each one
 * becomes the lone surrogate \udcXX (PEP 383 "surrogateescape"), so a Python
 * reader gets the exact bytes back with .encode("utf-8", "surrogateescape")
 * and any other reader sees U+FFFD, as Go's own JSON encoder would produce.
 */
static void put_json(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	put(b, "\"", 1);
	for (size_t i = 0; i < n;) {
		size_t len = utf8_len(u + i, n - i);
		if (u[i] == '"' || u[i] == '\\') {
			char esc[2] = {'\\', (char)u[i]};
			put(b, esc, 2);
		} else if (u[i] < 0x20 || len == 0) {
			char esc[6] = {'\\', 'u', len ? '0' : 'd', len ? '0' : 'c',
				       hex[u[i] >> 4], hex[u[i] & 15]};
			put(b, esc, 6);
		} else {
			put(b, u + i, len);
			i += len;
			continue;
		}
		i++;
	}
	put(b, "\"", 1);
}

static void put_base64(struct buf *b, const unsigned char *s, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) |
			     (i + 2 < n ? s[i + 2] : 0);
		char out[4] = {tab[v >> 18], tab[v >> 12 & 63], i + 1 < n ? tab[v >> 6 & 63] : '=',
			       i + 2 < n ? tab[v & 63] : '='};
		put(b, out, 4);
	}
}

/* ---- errors made by the shim itself ---- */

static char *cni_version; /* the stdin's top-level cniVersion, for our own errors */

__attribute__((noreturn, format(printf, 3, 4))) static void fail(int code, const char *msg,
								 const char *fmt, ...)
{
	char details[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(details, sizeof details, fmt, ap);
	va_end(ap);
	struct buf b = {0};
	const char *version = cni_version ? cni_version : "1.0.0";
	puts_(&b, "{\"cniVersion\":");
	put_json(&b, version, strlen(version));
	char num[32];
	snprintf(num, sizeof num, ",\"code\":%d,\"msg\":", code);
	puts_(&b, num);
	put_json(&b, msg, strlen(msg));
	puts_(&b, ",\"details\":");
	put_json(&b, details, strlen(details));
	puts_(&b, "}\n");
	const char *out = b.oom ? "{\"cniVersion\":\"1.0.0\",\"code\":5,"
				  "\"msg\":\"multihome-shim: out of memory\"}\n"
				: b.p;
	for (size_t off = 0, len = strlen(out); off < len;) {
		ssize_t w = write(1, out + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	fprintf(stderr, "multihome-shim: %s: %s\n", msg, details);
	exit(1);
}

/* ---- the few top-level members of the network config that the shim reads ---- */

struct span {
	const char *p, *end;
	int is_string, found;
};

struct scan {
	const char *p, *end;
};

static void skip_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* At a '"': the contents up to the closing quote, escapes left in place. */
static int scan_string(struct scan *s, struct span *out)
{
	if (s->p >= s->end || *s->p != '"')
		return 0;
	out->p = ++s->p;
	for (; s->p < s->end; s->p++) {
		if (*s->p == '"') {
			out->end = s->p++;
			return 1;
		}
		if (*s->p == '\\' && ++s->p == s->end)
			return 0;
	}
	return 0;
}

/* Skips one value of any kind without judging it: the daemon judges the config. */
static int skip_value(struct scan *s)
{
	long depth = 0;
	struct span ignored;
	do {
		skip_ws(s);
		if (s->p >= s->end)
			return 0;
		if (*s->p == '"') {
			if (!scan_string(s, &ignored))
				return 0;
		} else if (*s->p == '{' || *s->p == '[') {
			depth++, s->p++;
		} else if (*s->p == '}' || *s->p == ']' || *s->p == ',' || *s->p == ':') {
			if (depth == 0)
				return 0;
			depth -= *s->p == '}' || *s->p == ']';
			s->p++;
		} else { /* a number or literal: up to the next delimiter */
			s->p++;
			while (s->p < s->end && !memchr(" \t\r\n,:[]{}\"", *s->p, 11))
				s->p++;
		}
	} while (depth > 0);
	return 1;
}

static int hex4(const char *p, const char *end, unsigned *out)
{
	*out = 0;
	if (end - p < 4)
		return 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9' ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return 0;
		*out = *out << 4 | (unsigned)d;
	}
	return 1;
}

/* The decoded contents of a JSON string, or NULL for what cannot be in a C string or path:
 * bad escapes, NUL, lone surrogates. */
static char *decode(struct span v)
{
	char *o = malloc((size_t)(v.end - v.p) + 1), *q = o;
	const char *p = v.p;
	if (!o)
		return NULL;
	while (p < v.end) {
		unsigned u;
		char c = *p++;
		if (c != '\\') {
			if (c == 0)
				goto bad;
			*q++ = c;
			continue;
		}
		switch (*p++) { /* scan_string guarantees a character after each backslash */
		case '"': *q++ = '"'; continue;
		case '\\': *q++ = '\\'; continue;
		case '/': *q++ = '/'; continue;
		case 'b': *q++ = '\b'; continue;
		case 'f': *q++ = '\f'; continue;
		case 'n': *q++ = '\n'; continue;
		case 'r': *q++ = '\r'; continue;
		case 't': *q++ = '\t'; continue;
		case 'u': break;
		default: goto bad;
		}
		if (!hex4(p, v.end, &u))
			goto bad;
		p += 4;
		if (u >= 0xD800 && u <= 0xDBFF) {
			unsigned lo;
			if (v.end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, v.end, &lo) ||
			    lo < 0xDC00 || lo > 0xDFFF)
				goto bad;
			p += 6;
			u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
		} else if ((u >= 0xDC00 && u <= 0xDFFF) || u == 0) {
			goto bad;
		}
		if (u < 0x80) {
			*q++ = (char)u;
		} else if (u < 0x800) {
			*q++ = (char)(0xC0 | u >> 6), *q++ = (char)(0x80 | (u & 63));
		} else if (u < 0x10000) {
			*q++ = (char)(0xE0 | u >> 12), *q++ = (char)(0x80 | (u >> 6 & 63));
			*q++ = (char)(0x80 | (u & 63));
		} else {
			*q++ = (char)(0xF0 | u >> 18), *q++ = (char)(0x80 | (u >> 12 & 63));
			*q++ = (char)(0x80 | (u >> 6 & 63)), *q++ = (char)(0x80 | (u & 63));
		}
	}
	*q = 0;
	return o;
bad:
	free(o);
	return NULL;
}

enum { K_VERSION, K_DIR, K_NAME, K_READY, K_REQUEST, K_COUNT };
static const char *const key_names[K_COUNT] = {
	"cniVersion", "daemonSocketDir", "socketName", "shimReadinessTimeoutSeconds",
	"shimRequestTimeoutSeconds",
};

/*
 * Finds our keys among the members of the top-level object.  Members inside
 * nested values are skipped unread.  It stops at the end of the object or at
 * the first syntax error, keeping the members read before it: the daemon
 * reports the broken config, if it can be reached.  A repeated key: the last wins.
 */
static void scan_config(const char *text, size_t n, struct span found[K_COUNT])
{
	struct scan s = {text, text + n};
	skip_ws(&s);
	if (s.p >= s.end || *s.p++ != '{')
		return;
	for (;;) {
		struct span key, value = {0};
		skip_ws(&s);
		if (!scan_string(&s, &key))
			return;
		skip_ws(&s);
		if (s.p >= s.end || *s.p++ != ':')
			return;
		skip_ws(&s);
		value.p = s.p;
		if (s.p < s.end && *s.p == '"') {
			if (!scan_string(&s, &value))
				return;
			value.is_string = 1;
		} else {
			if (!skip_value(&s))
				return;
			value.end = s.p;
		}
		char *name = decode(key);
		for (int k = 0; name && k < K_COUNT; k++)
			if (strcmp(name, key_names[k]) == 0)
				found[k] = value, found[k].found = 1;
		free(name);
		skip_ws(&s);
		if (s.p >= s.end || *s.p++ != ',')
			return;
	}
}

/* A config value in an error message: its source text, shortened. */
static const char *excerpt(struct span v, char *out, size_t size)
{
	int n = (int)(v.end - v.p);
	snprintf(out, size, "%s%.*s%s%s", v.is_string ? "\"" : "", n > 200 ? 200 : n, v.p,
		 n > 200 ? "..." : "", v.is_string ? "\"" : "");
	return out;
}

/* A whole number of seconds or a decimal fraction, 0 to MAX_SECONDS; -1 if it is not one. */
static double parse_seconds(const char *text, size_t n)
{
	char tmp[40], *end;
	if (n == 0 || n >= sizeof tmp || text[0] < '0' || text[0] > '9')
		return -1;
	memcpy(tmp, text, n);
	tmp[n] = 0;
	if (strspn(tmp, "0123456789.eE+-") != n)
		return -1;
	double v = strtod(tmp, &end);
	return *end == 0 && v >= 0 && v <= MAX_SECONDS ? v : -1;
}

static double seconds_setting(struct span v, const char *key, const char *env, double fallback)
{
	char shown[256];
	const char *e = getenv(env);
	if (e) {
		double s = parse_seconds(e, strlen(e));
		if (s < 0)
			fail(E_ENV, "invalid timeout in the environment",
			     "%s must be a number of seconds from 0 to %g; got \"%.200s\"", env,
			     MAX_SECONDS, e);
		return s;
	}
	if (!v.found)
		return fallback;
	double s = v.is_string ? -1 : parse_seconds(v.p, (size_t)(v.end - v.p));
	if (s < 0)
		fail(E_CONFIG, "invalid shim timeout in the network config",
		     "%s must be a number of seconds from 0 to %g; got %s", key, MAX_SECONDS,
		     excerpt(v, shown, sizeof shown));
	return s;
}

static const char *string_setting(struct span v, const char *key, const char *fallback,
				  int plain_name)
{
	char shown[256];
	if (!v.found)
		return fallback;
	char *s = v.is_string ? decode(v) : NULL;
	if (s && *s == 0)
		return fallback; /* as upstream: an empty daemonSocketDir means the default */
	if (!s || (plain_name && strchr(s, '/')))
		fail(E_CONFIG, "invalid shim setting in the network config",
		     "%s must be a JSON string naming a %s; got %s", key,
		     plain_name ? "file (no '/')" : "directory", excerpt(v, shown, sizeof shown));
	return s;
}

/* ---- talking to the daemon ---- */

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static const char *socket_path;
static char request_id[33];
static double answer_timeout, answer_deadline;

static int connect_daemon(const struct sockaddr_un *sa, double timeout)
{
	double deadline = now() + timeout, delay = 0.01;
	for (int attempt = 0;; attempt++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			fail(E_IO, "cannot make a unix socket", "socket: %s", strerror(errno));
		if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0)
			return fd;
		int err = errno;
		close(fd);
		if (err != ENOENT && err != ECONNREFUSED && err != EAGAIN && err != EINTR)
			fail(E_AGAIN, "cannot connect to the multihome daemon", "connect %s: %s",
			     socket_path, strerror(err));
		double left = deadline - now();
		if (left <= 0)
			fail(E_AGAIN, "multihome daemon is not running",
			     "no daemon answered at %s after %g s; check the multihome DaemonSet "
			     "on this node",
			     socket_path, timeout);
		if (attempt == 0) /* one line for the runtime's log, so a slow start is visible */
			fprintf(stderr, "multihome-shim: no daemon at %s yet (%s); waiting up to %g s\n",
				socket_path, strerror(err), timeout);
		double pause = delay < left ? delay : left;
		struct timespec ts = {(time_t)pause, (long)((pause - (double)(time_t)pause) * 1e9)};
		nanosleep(&ts, NULL);
		delay = delay * 2 < 0.2 ? delay * 2 : 0.2;
	}
}

static void wait_for(int fd, short events)
{
	for (;;) {
		double left = answer_deadline - now();
		if (left <= 0)
			fail(E_AGAIN, "multihome daemon did not answer",
			     "no answer from %s within %g s (request %s)", socket_path,
			     answer_timeout, request_id);
		struct pollfd p = {fd, events, 0};
		int r = poll(&p, 1, (int)(left * 1000) + 1);
		if (r > 0 || (r < 0 && errno != EINTR))
			return;
	}
}

/* Sends what it can; a daemon that closes early may still have answered, so the caller reads on. */
static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w, n -= (size_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			wait_for(fd, POLLOUT);
		} else {
			return;
		}
	}
}

static __attribute__((noreturn, format(printf, 1, 2))) void malformed(const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	fail(E_IO, "malformed answer from the multihome daemon", "%s: %s (request %s)",
	     socket_path, what, request_id);
}

static long parse_digits(const char *p, size_t n, int base, long max)
{
	long v = 0;
	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int d = p[i] >= '0' && p[i] <= '9' ? p[i] - '0'
			: base == 16 && (p[i] | 32) >= 'a' && (p[i] | 32) <= 'f' ? (p[i] | 32) - 'a' + 10
			: -1;
		if (d < 0 || v > (max - d) / base)
			return -1;
		v = v * base + d;
	}
	return v;
}

struct answer {
	int status;
	long exit_code, content_length;
	int chunked;
	size_t header_len;
};

/* Parses the status line and headers once they are all in; 0 while they are not. */
static int parse_head(const char *p, size_t n, struct answer *a)
{
	const char *end = memmem(p, n, "\r\n\r\n", 4);
	if (!end)
		return 0;
	a->header_len = (size_t)(end - p) + 4;
	a->exit_code = a->content_length = -1;
	if (end - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' ||
	    (a->status = (int)parse_digits(p + 9, 3, 10, 999)) < 100)
		malformed("the answer does not start with an HTTP/1.x status line");
	for (const char *line = memmem(p, (size_t)(end - p) + 2, "\r\n", 2) + 2; line < end;) {
		const char *eol = memmem(line, (size_t)(end - line) + 2, "\r\n", 2);
		const char *colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon)
			malformed("header line without ':'");
		const char *v = colon + 1, *ve = eol;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		size_t name_len = (size_t)(colon - line), vn = (size_t)(ve - v);
#define IS(name) (name_len == strlen(name) && strncasecmp(line, name, name_len) == 0)
		if (IS("X-CNI-Exit-Code") && (a->exit_code = parse_digits(v, vn, 10, 255)) < 0)
			malformed("X-CNI-Exit-Code is \"%.*s\", not a number from 0 to 255",
				  (int)(vn > 40 ? 40 : vn), v);
		if (IS("Content-Length") &&
		    (a->content_length = parse_digits(v, vn, 10, (long)ANSWER_CAP)) < 0)
			malformed("Content-Length is \"%.*s\"", (int)(vn > 40 ? 40 : vn), v);
		if (IS("Transfer-Encoding")) {
			if (vn != 7 || strncasecmp(v, "chunked", 7) != 0)
				malformed("unsupported Transfer-Encoding \"%.*s\"",
					  (int)(vn > 40 ? 40 : vn), v);
			a->chunked = 1;
		}
#undef IS
		line = eol + 2;
	}
	return 1;
}

/* Decodes a chunked body in place; returns its length. */
static size_t dechunk(char *p, size_t n)
{
	size_t in = 0, out = 0;
	for (;;) {
		const char *eol = memmem(p + in, n - in, "\r\n", 2);
		if (!eol)
			malformed("chunked body ends before its last chunk");
		const char *ext = memchr(p + in, ';', (size_t)(eol - (p + in)));
		size_t digits = (size_t)((ext ? ext : eol) - (p + in));
		long size = parse_digits(p + in, digits, 16, (long)ANSWER_CAP);
		if (size < 0)
			malformed("bad chunk size");
		in = (size_t)(eol - p) + 2;
		if (size == 0)
			return out;
		if (n - in < (size_t)size + 2 || memcmp(p + in + size, "\r\n", 2) != 0)
			malformed("chunked body ends inside a chunk");
		memmove(p + out, p + in, (size_t)size);
		out += (size_t)size, in += (size_t)size + 2;
	}
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			exit(1); /* stdout is gone: nobody is left to tell */
		p += w, n -= (size_t)w;
	}
}

static void make_request_id(void)
{
	unsigned char raw[16] = {0};
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, raw, sizeof raw) != (ssize_t)sizeof raw) {
		/* only used to follow a request in logs: time and pid are unique enough */
		struct timespec t;
		clock_gettime(CLOCK_REALTIME, &t);
		uint64_t mix[2] = {(uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec,
				   (uint64_t)getpid()};
		memcpy(raw, mix, sizeof raw);
	}
	if (fd >= 0)
		close(fd);
	for (int i = 0; i < 16; i++)
		snprintf(request_id + 2 * i, 3, "%02x", raw[i]);
}

int main(int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
		printf("multihome-shim %s\n", SHIM_VERSION);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);

	struct buf in = {0};
	char chunk[65536];
	int too_large = 0;
	for (;;) {
		ssize_t r = read(0, chunk, sizeof chunk);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail(E_IO, "cannot read the network config", "stdin: %s", strerror(errno));
		if (r == 0)
			break;
		if ((too_large = in.len + (size_t)r > STDIN_CAP))
			break;
		put(&in, chunk, (size_t)r);
	}
	const char *command = getenv("CNI_COMMAND");
	if (command && strcmp(command, "VERSION") == 0) {
		/* stdin was read (and dropped) only so that the runtime's write never fails */
		write_all(1, VERSION_ANSWER, sizeof VERSION_ANSWER - 1);
		return 0;
	}
	make_request_id();
	struct span found[K_COUNT] = {{0}};
	scan_config(in.p ? in.p : "", in.len, found);
	if (found[K_VERSION].found && found[K_VERSION].is_string)
		cni_version = decode(found[K_VERSION]);
	if (in.oom)
		fail(E_IO, "cannot read the network config", "stdin: out of memory");
	if (too_large)
		fail(E_IO, "network config too large", "stdin holds more than %zu MiB",
		     STDIN_CAP >> 20);

	const char *dir = string_setting(found[K_DIR], "daemonSocketDir", "/run/multihome", 0);
	const char *name = string_setting(found[K_NAME], "socketName", "multihome.sock", 1);
	double ready_timeout = seconds_setting(found[K_READY], "shimReadinessTimeoutSeconds",
					       "MULTIHOME_SHIM_TIMEOUT", 10);
	answer_timeout = seconds_setting(found[K_REQUEST], "shimRequestTimeoutSeconds",
					 "MULTIHOME_SHIM_REQUEST_TIMEOUT", 300);

	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t dir_len = strlen(dir);
	int slash = dir_len > 0 && dir[dir_len - 1] == '/';
	int path_len = snprintf(sa.sun_path, sizeof sa.sun_path, "%s%s%s", dir, slash ? "" : "/",
				name);
	struct buf path = {0};
	puts_(&path, dir), puts_(&path, slash ? "" : "/"), puts_(&path, name);
	socket_path = path.oom ? "(out of memory)" : path.p;
	if (path_len < 0 || (size_t)path_len >= sizeof sa.sun_path)
		fail(E_CONFIG, "daemon socket path too long",
		     "%.300s is %zu bytes; a unix socket path holds at most %zu", socket_path,
		     path.len, sizeof sa.sun_path - 1);

	struct buf body = {0};
	puts_(&body, "{\"env\":{");
	int first = 1;
	for (char **e = environ; *e; e++) {
		char *eq = strchr(*e, '=');
		if (strncmp(*e, "CNI_", 4) != 0 || !eq)
			continue;
		int seen = 0; /* a name given twice: send the value getenv() sees, once */
		for (char **o = environ; o < e && !seen; o++)
			seen = strncmp(*o, *e, (size_t)(eq - *e) + 1) == 0;
		if (seen)
			continue;
		puts_(&body, first ? "" : ",");
		put_json(&body, *e, (size_t)(eq - *e));
		puts_(&body, ":");
		put_json(&body, eq + 1, strlen(eq + 1));
		first = 0;
	}
	puts_(&body, "},\"config\":\"");
	put_base64(&body, (const unsigned char *)in.p, in.len);
	puts_(&body, "\"}");
	struct buf head = {0};
	char line[256];
	snprintf(line, sizeof line,
		 "POST /shim/v1/cni HTTP/1.1\r\nHost: multihome\r\n"
		 "Content-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n"
		 "X-Multihome-Request-Id: %s\r\nUser-Agent: multihome-shim/%s\r\n\r\n",
		 body.len, request_id, SHIM_VERSION);
	puts_(&head, line);
	if (body.oom || head.oom)
		fail(E_IO, "cannot build the request to the multihome daemon", "out of memory");
	free(in.p);

	int fd = connect_daemon(&sa, ready_timeout);
	answer_deadline = now() + answer_timeout;
	send_all(fd, head.p, head.len);
	send_all(fd, body.p, body.len);
	free(body.p);

	struct buf ans = {0};
	struct answer a = {0};
	int have_head = 0;
	for (;;) {
		ssize_t r = recv(fd, chunk, sizeof chunk, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			wait_for(fd, POLLIN);
			continue;
		}
		if (r < 0 && errno != ECONNRESET)
			fail(E_AGAIN, "lost the connection to the multihome daemon",
			     "%s: %s (request %s)", socket_path, strerror(errno), request_id);
		if (r <= 0)
			break;
		if (ans.len + (size_t)r > ANSWER_CAP)
			malformed("the answer is larger than %zu MiB", ANSWER_CAP >> 20);
		put(&ans, chunk, (size_t)r);
		if (ans.oom)
			fail(E_IO, "cannot read the answer of the multihome daemon", "out of memory");
		if (!have_head)
			have_head = parse_head(ans.p, ans.len, &a);
		if (have_head && a.content_length >= 0 && !a.chunked &&
		    ans.len >= a.header_len + (size_t)a.content_length)
			break; /* complete: no need to wait for the daemon to close */
	}
	close(fd);
	if (ans.len == 0)
		fail(E_AGAIN, "multihome daemon closed the connection without an answer",
		     "%s (request %s)", socket_path, request_id);
	if (!have_head && !parse_head(ans.p, ans.len, &a))
		malformed("the answer ends inside its headers");
	char *p = ans.p + a.header_len;
	size_t n = ans.len - a.header_len;
	if (a.chunked)
		n = dechunk(p, n);
	else if (a.content_length >= 0 && n < (size_t)a.content_length)
		fail(E_AGAIN, "multihome daemon closed the connection in the middle of its answer",
		     "%s: got %zu of %ld bytes (request %s)", socket_path, n, a.content_length,
		     request_id);
	else if (a.content_length >= 0)
		n = (size_t)a.content_length;

	int code = a.exit_code >= 0 ? (int)a.exit_code : a.status == 200 ? 0 : 1;
	size_t lead = 0;
	while (lead < n && memchr(" \t\r\n", p[lead], 4))
		lead++;
	/* A failure must print a CNI error: an answer that is not one did not come from the
	 * daemon's CNI handler (a proxy, a framework error page, another server). */
	if (code != 0 && (lead == n || p[lead] != '{'))
		fail(a.status >= 500 ? E_AGAIN : E_IO, "unexpected answer from the multihome daemon",
		     "%s answered HTTP %d with %zu bytes that are not a CNI error: \"%.*s\" "
		     "(request %s)",
		     socket_path, a.status, n, (int)(n > 200 ? 200 : n), p, request_id);
	write_all(1, p, n);
	return code;
}
