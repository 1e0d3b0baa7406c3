// echo_epoll: a plain epoll echo server in C, one thread, non-blocking
// read/write system calls after readiness: the floor for a readiness-based
// server on this machine, beside echo_uring (I/O through the ring).
//
// Level-triggered, on purpose: an edge-triggered server must read until
// EAGAIN after every edge, which for a request/response echo costs one extra
// read() per message; level-triggered reads once per event and is woken again
// if bytes remain. Per message that is epoll_wait's share, one read, one write.
//
// Per connection: the bytes read are written back at once; what the socket
// does not take (a partial write or EAGAIN) waits in an output buffer, in
// order, with EPOLLOUT armed, and anything read meanwhile queues behind it.
// Past HIGH_WATER buffered bytes the connection stops reading (EPOLLIN off)
// until its buffer drains, so a peer that never reads cannot grow it without
// bound. On EOF the buffered echo is flushed, then the fd closed; on a reset
// or any other error the fd is closed at once.
//
// Stale events: each fd's epoll data carries a generation beside the fd, so
// an event harvested in the same epoll_wait batch for a connection already
// closed (whose fd number accept() may have handed out again) is dropped.
//
// Flags and startup line: see echo_common.h.
#include "echo_common.h"

#include <stdint.h>
#include <sys/epoll.h>
#include <time.h>

#define NAME "c-epoll"
#define MAX_EVENTS 512
#define READ_SIZE (64 * 1024)
#define HIGH_WATER (1 << 20) // buffered output bytes that stop reading
#define ACCEPT_BATCH 128
#define EMFILE_PAUSE_MS 100

struct conn {
	uint32_t gen;    // bumped on every open; epoll data carries it
	uint32_t events; // the interest set now registered
	int open;
	int eof; // the peer finished sending: close once out is flushed
	struct buf out;
};

static struct conn *conns; // indexed by fd
static size_t nconns;
static int ep;
static char rbuf[READ_SIZE];

static uint64_t tag(int fd, uint32_t gen) { return (uint64_t)gen << 32 | (uint32_t)fd; }

static struct conn *conn_get(int fd) {
	if ((size_t)fd >= nconns) {
		size_t n = nconns ? nconns : 1024;
		while (n <= (size_t)fd)
			n *= 2;
		struct conn *c = realloc(conns, n * sizeof *c);
		if (!c)
			return NULL;
		memset(c + nconns, 0, (n - nconns) * sizeof *c);
		conns = c;
		nconns = n;
	}
	return &conns[fd];
}

static void conn_close(int fd, struct conn *c) {
	// close() removes fd from the epoll set (no other reference to the file).
	close(fd);
	buf_free(&c->out);
	c->open = 0;
	c->eof = 0;
	c->events = 0;
}

// set_events makes fd's interest set ev; false if epoll refused.
static int set_events(int fd, struct conn *c, uint32_t ev) {
	if (c->events == ev)
		return 1;
	struct epoll_event e = {.events = ev, .data.u64 = tag(fd, c->gen)};
	if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e) < 0)
		return 0;
	c->events = ev;
	return 1;
}

// flush writes c's buffered output; false when the connection must close
// (a write error, or EOF seen and everything flushed).
static int flush(int fd, struct conn *c) {
	while (buf_pending(&c->out) > 0) {
		ssize_t n = write(fd, c->out.p + c->out.off, buf_pending(&c->out));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return 0;
		}
		c->out.off += (size_t)n;
	}
	size_t left = buf_pending(&c->out);
	if (left == 0) {
		if (c->eof)
			return 0;
		if (c->out.cap > 4 * READ_SIZE)
			buf_free(&c->out); // a burst is over: give its memory back
		else
			c->out.off = c->out.len = 0;
	}
	uint32_t ev = 0;
	if (!c->eof && left < HIGH_WATER)
		ev |= EPOLLIN;
	if (left > 0)
		ev |= EPOLLOUT;
	return set_events(fd, c, ev);
}

// on_readable reads once and echoes; false when the connection must close.
static int on_readable(int fd, struct conn *c) {
	ssize_t n = read(fd, rbuf, sizeof rbuf);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	if (n == 0) {
		c->eof = 1;
		return flush(fd, c);
	}
	if (buf_pending(&c->out) == 0) {
		// The common case: write straight from the read buffer.
		ssize_t w;
		do
			w = write(fd, rbuf, (size_t)n);
		while (w < 0 && errno == EINTR);
		if (w < 0 && errno != EAGAIN)
			return 0;
		if (w == n)
			return 1;
		if (w < 0)
			w = 0;
		if (!buf_append(&c->out, rbuf + w, (size_t)(n - w)))
			return 0;
		return flush(fd, c);
	}
	if (!buf_append(&c->out, rbuf, (size_t)n))
		return 0;
	return flush(fd, c);
}

static void on_accept(int lfd, int *paused) {
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			if (errno == ECONNABORTED || errno == EPERM || errno == EPROTO)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				// Out of fds or memory: stop watching the listener for a while
				// rather than spin on a pending connection we cannot take.
				struct epoll_event e = {.events = 0, .data.u64 = tag(lfd, 0)};
				if (epoll_ctl(ep, EPOLL_CTL_MOD, lfd, &e) < 0)
					die(NAME, "epoll_ctl pause listener", errno);
				*paused = 1;
				return;
			}
			die(NAME, "accept4", errno);
		}
		struct conn *c = conn_get(fd);
		if (!c) {
			close(fd);
			continue;
		}
		if (c->open) {
			fprintf(stderr, NAME ": fd %d accepted while still open\n", fd);
			abort();
		}
		echo_nodelay(fd);
		c->gen++;
		c->open = 1;
		c->eof = 0;
		c->events = EPOLLIN;
		struct epoll_event e = {.events = c->events, .data.u64 = tag(fd, c->gen)};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) {
			conn_close(fd, c);
			continue;
		}
	}
}

static long now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
	struct echo_opts o = echo_parse(NAME, argc, argv);
	int sfd = echo_signalfd(NAME, 1);
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die(NAME, "epoll_create1", errno);
	int lfd = echo_listen(NAME, o, 1); // last: its startup line says we are up
	// The listener and the signal fd are told apart from connections by
	// fd number: both are open for the whole run, so no connection has
	// their numbers.
	struct epoll_event e = {.events = EPOLLIN, .data.u64 = tag(lfd, 0)};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e) < 0)
		die(NAME, "epoll_ctl listener", errno);
	e.data.u64 = tag(sfd, 0);
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &e) < 0)
		die(NAME, "epoll_ctl signalfd", errno);

	struct epoll_event evs[MAX_EVENTS];
	int paused = 0, stop = 0;
	long resume_at = 0;
	while (!stop) {
		int timeout = -1;
		if (paused) {
			long left = resume_at - now_ms();
			timeout = left > 0 ? (int)left : 0;
		}
		int n = epoll_wait(ep, evs, MAX_EVENTS, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die(NAME, "epoll_wait", errno);
		}
		for (int i = 0; i < n; i++) {
			int fd = (int)(uint32_t)evs[i].data.u64;
			uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
			uint32_t ev = evs[i].events;
			if (fd == sfd) {
				stop = 1;
				continue;
			}
			if (fd == lfd) {
				if (!paused) {
					on_accept(lfd, &paused);
					if (paused)
						resume_at = now_ms() + EMFILE_PAUSE_MS;
				}
				continue;
			}
			struct conn *c = (size_t)fd < nconns ? &conns[fd] : NULL;
			if (!c || !c->open || c->gen != gen)
				continue; // stale: that connection is gone
			int ok = 1;
			if (ev & EPOLLERR)
				ok = 0;
			if (ok && (ev & EPOLLOUT))
				ok = flush(fd, c);
			if (ok && (ev & EPOLLIN) && (c->events & EPOLLIN))
				ok = on_readable(fd, c);
			else if (ok && (ev & EPOLLHUP))
				ok = 0; // both directions gone and nothing to read
			if (!ok)
				conn_close(fd, c);
		}
		if (paused && now_ms() >= resume_at) {
			e.events = EPOLLIN;
			e.data.u64 = tag(lfd, 0);
			if (epoll_ctl(ep, EPOLL_CTL_MOD, lfd, &e) < 0)
				die(NAME, "epoll_ctl resume listener", errno);
			paused = 0;
		}
	}

	for (size_t fd = 0; fd < nconns; fd++)
		if (conns[fd].open)
			conn_close((int)fd, &conns[fd]);
	free(conns);
	close(lfd);
	close(ep);
	close(sfd);
	return 0;
}
