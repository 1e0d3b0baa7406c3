// echo_common.h: what the C echo servers (echo_uring.c, echo_epoll.c) share:
// their flags, the listening socket, the startup line and the signal fd.
// Header-only (static functions) so each server stays one translation unit.
//
// Flags, as the Go peers in bench/peers take them:
//   --addr HOST:PORT   listen address (default 127.0.0.1:0; port 0 lets the
//                      kernel pick, and the startup line says which)
//   --loops N          event loops; these servers have exactly one, so 0 or 1
//
// Startup line, on stderr, in the Go peers' format (bench/peers/internal/peer
// Announce), which scripts/compare.sh parses:
//   NAME: listening on tcp:127.0.0.1:PORT loops=1 gomaxprocs=1 pid=PID
// (gomaxprocs=1: one thread does all the work.)
//
// SIGINT and SIGTERM are blocked and read from a signalfd that the server
// watches like any other fd, so a stop request is an ordinary event of the
// loop: the server closes everything and exits 0.
#ifndef ECHO_COMMON_H
#define ECHO_COMMON_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

// Unrecoverable setup or invariant failures end the process with one line;
// per-connection conditions (resets, EAGAIN, EOF) never come here.
#define die(name, what, err)                                                             \
	do {                                                                             \
		fprintf(stderr, "%s: %s: %s\n", (name), (what), strerror((err) < 0 ? -(err) : (err))); \
		exit(1);                                                                 \
	} while (0)

struct echo_opts {
	const char *host; // numeric host, no brackets
	const char *port;
	int loops;
};

static void echo_usage(const char *name, FILE *f) {
	fprintf(f,
		"usage: %s [--addr HOST:PORT] [--loops 0|1]\n"
		"  --addr HOST:PORT  listen address (default 127.0.0.1:0: the kernel picks the port)\n"
		"  --loops N         event loops; this server has one (0 or 1)\n",
		name);
}

// echo_parse reads --addr and --loops (also as --flag=value, and with one
// dash as Go's flag package allows). Bad usage prints one line and exits 2;
// --help prints the usage and exits 0.
static struct echo_opts echo_parse(const char *name, int argc, char **argv) {
	static char addr[256] = "127.0.0.1:0";
	struct echo_opts o = {0};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		if (a[0] == '-' && a[1] == '-')
			a++;
		if (strcmp(a, "-h") == 0 || strcmp(a, "-help") == 0) {
			echo_usage(name, stdout);
			exit(0);
		}
		const char *eq = strchr(a, '=');
		size_t klen = eq ? (size_t)(eq - a) : strlen(a);
		if (eq)
			val = eq + 1;
		else if (i + 1 < argc)
			val = argv[i + 1];
		if (klen == 5 && strncmp(a, "-addr", 5) == 0 && val) {
			if (strlen(val) >= sizeof addr) {
				fprintf(stderr, "%s: --addr too long\n", name);
				exit(2);
			}
			strcpy(addr, val);
		} else if (klen == 6 && strncmp(a, "-loops", 6) == 0 && val) {
			char *end;
			long n = strtol(val, &end, 10);
			if (*val == '\0' || *end != '\0' || n < 0 || n > 1) {
				fprintf(stderr, "%s: --loops %s: this server has one event loop (0 or 1)\n", name, val);
				exit(2);
			}
			o.loops = (int)n;
		} else {
			fprintf(stderr, "%s: unknown or incomplete argument %s\n", name, argv[i]);
			echo_usage(name, stderr);
			exit(2);
		}
		if (!eq)
			i++;
	}
	// Split HOST:PORT at the last colon; [v6]:port loses its brackets.
	char *colon = strrchr(addr, ':');
	if (!colon) {
		fprintf(stderr, "%s: --addr %s: want HOST:PORT\n", name, addr);
		exit(2);
	}
	*colon = '\0';
	o.host = addr;
	o.port = colon + 1;
	size_t hl = strlen(addr);
	if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']') {
		addr[hl - 1] = '\0';
		o.host = addr + 1;
	}
	if (*o.host == '\0')
		o.host = "0.0.0.0";
	return o;
}

// echo_listen opens a listening TCP socket on o's address, non-blocking
// (flags add SOCK_NONBLOCK or not), and prints the startup line with the
// address the kernel bound. It exits on failure.
static int echo_listen(const char *name, struct echo_opts o, int nonblock) {
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *ai;
	int rc = getaddrinfo(o.host, o.port, &hints, &ai);
	if (rc != 0) {
		fprintf(stderr, "%s: --addr %s:%s: %s\n", name, o.host, o.port, gai_strerror(rc));
		exit(2);
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		die(name, "socket", errno);
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		die(name, "SO_REUSEADDR", errno);
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		die(name, "bind", errno);
	freeaddrinfo(ai);
	if (listen(fd, 4096) < 0)
		die(name, "listen", errno);

	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		die(name, "getsockname", errno);
	char host[INET6_ADDRSTRLEN], bound[INET6_ADDRSTRLEN + 16];
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
		snprintf(bound, sizeof bound, "[%s]:%u", host, ntohs(s6->sin6_port));
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
		snprintf(bound, sizeof bound, "%s:%u", host, ntohs(s4->sin_port));
	}
	fprintf(stderr, "%s: listening on tcp:%s loops=1 gomaxprocs=1 pid=%d\n", name, bound, (int)getpid());
	return fd;
}

// echo_signalfd blocks SIGINT and SIGTERM and returns a signalfd that
// becomes readable when one arrives. SIGPIPE is ignored: a peer that reset
// shows up as EPIPE from a write, never as a signal.
static int echo_signalfd(const char *name, int nonblock) {
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		die(name, "sigprocmask", errno);
	signal(SIGPIPE, SIG_IGN);
	int fd = signalfd(-1, &set, SFD_CLOEXEC | (nonblock ? SFD_NONBLOCK : 0));
	if (fd < 0)
		die(name, "signalfd", errno);
	return fd;
}

// echo_nodelay turns Nagle off on an accepted socket, as Go's net does by
// default, so that the servers compare on equal terms with the Go peers.
static void echo_nodelay(int fd) {
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// struct buf is a growable byte buffer: p[off:len] are the bytes not yet
// consumed, cap is p's allocation.
struct buf {
	char *p;
	size_t off, len, cap;
};

// buf_append copies n bytes to the end of b, growing it; false when out of
// memory (the caller drops the connection).
static int buf_append(struct buf *b, const char *src, size_t n) {
	if (b->off > 0 && b->off == b->len)
		b->off = b->len = 0;
	if (b->len + n > b->cap) {
		if (b->off > 0) { // compact before growing
			memmove(b->p, b->p + b->off, b->len - b->off);
			b->len -= b->off;
			b->off = 0;
		}
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		if (cap != b->cap) {
			char *p = realloc(b->p, cap);
			if (!p)
				return 0;
			b->p = p;
			b->cap = cap;
		}
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
	return 1;
}

static size_t buf_pending(const struct buf *b) { return b->len - b->off; }

static void buf_free(struct buf *b) {
	free(b->p);
	*b = (struct buf){0};
}

#endif
