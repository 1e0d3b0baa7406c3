// echo_uring: an io_uring echo server in C on liburing, one thread, with the
// I/O itself going through the ring: the reference that echod's io_uring
// backend is measured against (issue 12), beside echo_epoll.
//
// The loop, per turn:
//   1. every SQE the previous turn prepared goes to the kernel together with
//      the wait, in one io_uring_submit_and_wait(ring, 1);
//   2. every CQE then in the ring is handled, which prepares the next SQEs;
//      buffers handed back to the provided-buffer ring are published once.
// (An SQ that fills up mid-turn is submitted early; with 4096 entries that
// does not happen at these loads.)
//
// --gather does what echod's KernelWait loops do under load: after a turn
// that handled n > 1 CQEs, where the turn prepared SQEs and no CQE is
// already waiting, the enter of step 1 waits, up to 50 µs, until n CQEs
// are posted rather than one, so that a loaded server makes one enter and
// one wake-up per batch. Without it (the default) this is the plain loop,
// the reference the issue named; with it, the same technique in C. It
// needs IORING_FEAT_EXT_ARG (5.11): on older kernels liburing would time
// the wait with a TIMEOUT request of its own, so --gather does nothing
// there, and the startup line says so.
//
// Requests:
//   ACCEPT  multishot on the listener (one-shot where the kernel refuses
//           multishot); after EMFILE/ENFILE it pauses 100 ms (a TIMEOUT)
//           instead of spinning on the connection it cannot take.
//   RECV    multishot, picking buffers from a provided-buffer ring (group 0,
//           NBUFS × BUF_SIZE), where the kernel has both; else one-shot RECV
//           into the connection's own buffer. --recv oneshot forces the
//           fallback.
//   SEND    of what was received, MSG_NOSIGNAL; at most one in flight per
//           connection so bytes never reorder; a short send resubmits the
//           rest. With nothing queued, a recv's provided buffer is sent as
//           it is (no copy) and goes back to the ring when the send is done;
//           bytes that arrive while a send is in flight are copied to the
//           connection's queue and their buffer goes back at once, so a
//           connection holds at most one provided buffer.
//   CANCEL  of a connection's recv, when it closes or its queue passes
//           HIGH_WATER (a peer that does not read: stop receiving until the
//           queue has gone out).
//   POLL    of the signalfd: SIGINT/SIGTERM end the loop.
//
// Every request's user_data is a tag: the kind, the connection's generation
// and its fd. A connection's fd is closed only after its last request's
// final CQE (the ring holds its own reference to the file, so close() would
// not end them), so no CQE can arrive for an fd number accept() has handed
// out again; the generation checks that, and a mismatch is a bug (abort).
//
// The ring is set up with SINGLE_ISSUER|DEFER_TASKRUN where the kernel has
// them (6.1), else COOP_TASKRUN (5.19), else no flags; the line after the
// startup line says which, and which recv path is in use.
//
// Flags and startup line: see echo_common.h; plus --recv multishot|oneshot
// and --gather.
#include "echo_common.h"

#include <liburing.h>
#include <poll.h>
#include <stdint.h>
#include <sys/mman.h>

#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

#define NAME "c-uring"
#define SQ_ENTRIES 4096
#define CQ_ENTRIES 16384
#define NBUFS 2048          // provided buffers (a power of two)
#define BUF_SIZE (16 * 1024) // bytes per provided buffer, and per one-shot recv
#define BGID 0
#define HIGH_WATER (1 << 20) // queued bytes that pause a connection's recv
#define EMFILE_PAUSE_NS 100000000LL

// --- tags ---------------------------------------------------------------
//
//   63            32 31              8 7      0
//  +----------------+-----------------+--------+
//  |       fd       |  gen (24 bits)  |  kind  |
//  +----------------+-----------------+--------+
enum kind { K_ACCEPT = 1, K_RECV, K_SEND, K_CANCEL, K_SIGNAL, K_TIMEOUT };
#define GEN_MASK 0xffffffu

static uint64_t tag(enum kind k, int fd, uint32_t gen) {
	return (uint64_t)(uint32_t)fd << 32 | (uint64_t)(gen & GEN_MASK) << 8 | (uint64_t)k;
}
static enum kind tag_kind(uint64_t t) { return (enum kind)(t & 0xff); }
static uint32_t tag_gen(uint64_t t) { return (uint32_t)(t >> 8) & GEN_MASK; }
static int tag_fd(uint64_t t) { return (int)(uint32_t)(t >> 32); }

// --- state --------------------------------------------------------------

struct conn {
	uint32_t gen; // bumped on every open; tags carry it
	unsigned open : 1;
	unsigned recv_armed : 1;  // a recv request is in the kernel (until its last CQE)
	unsigned cancel_sent : 1; // a cancel for that recv has been submitted
	unsigned sending : 1;     // a send request is in the kernel
	unsigned eof : 1;         // the peer finished sending: close once flushed
	unsigned closing : 1;     // close as soon as no request is in the kernel
	unsigned paused : 1;      // queue above HIGH_WATER: recv stays off
	unsigned starved : 1;     // recv ended with ENOBUFS: re-arm when buffers return
	int send_bid;             // provided buffer being sent, or -1 for sbuf
	const char *send_p;       // the bytes being sent: send_p[send_off:send_len]
	size_t send_off, send_len;
	struct buf sbuf; // owned bytes being sent (send_bid == -1)
	struct buf q;    // bytes received while a send was in flight, in order
	struct buf rbuf; // one-shot recv's target
};

static struct io_uring ring;
static struct conn *conns; // indexed by fd
static size_t nconns;
static int lfd, sfd;
static int stopping;

// GATHER_NS bounds how long --gather waits for a batch (echod's gatherFor).
#define GATHER_NS (50 * 1000)

static int use_bufring;   // recv is multishot from the provided-buffer ring
static int accept_multi = 1;
static struct io_uring_buf_ring *br;
static char *bufs;        // NBUFS × BUF_SIZE
static int br_added;      // buffers added since the last publish

static int *starved;      // fds waiting for provided buffers
static size_t nstarved, capstarved;

static struct signalfd_siginfo siginfo;
static struct __kernel_timespec emfile_pause = {.tv_nsec = EMFILE_PAUSE_NS};

// sqe returns a free SQE, submitting what is queued if the SQ is full.
static struct io_uring_sqe *sqe(void) {
	struct io_uring_sqe *s = io_uring_get_sqe(&ring);
	if (!s) {
		int rc = io_uring_submit(&ring);
		if (rc < 0)
			die(NAME, "io_uring_submit (SQ full)", rc);
		s = io_uring_get_sqe(&ring);
		if (!s)
			die(NAME, "no SQE after submit", EBUSY);
	}
	return s;
}

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

// --- provided buffers -------------------------------------------------------

static void buf_return(int bid) {
	io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(NBUFS), br_added++);
}

// bufring_publish makes the buffers returned this turn visible to the kernel
// (one release store of the tail).
static void bufring_publish(void) {
	if (br_added) {
		io_uring_buf_ring_advance(br, br_added);
		br_added = 0;
	}
}

// bufring_setup registers the provided-buffer ring; false where the kernel
// lacks buffer rings (before 5.19), and the one-shot path is used instead.
static int bufring_setup(void) {
	bufs = mmap(NULL, (size_t)NBUFS * BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (bufs == MAP_FAILED)
		die(NAME, "mmap buffers", errno);
	// The ring hands buffers out in FIFO order, so every one of them cycles
	// through the cache and the TLB; huge pages keep the TLB's share small.
	(void)madvise(bufs, (size_t)NBUFS * BUF_SIZE, MADV_HUGEPAGE);
#if defined(IO_URING_VERSION_MAJOR) && (IO_URING_VERSION_MAJOR > 2 || IO_URING_VERSION_MINOR >= 4)
	int rc;
	br = io_uring_setup_buf_ring(&ring, NBUFS, BGID, 0, &rc);
	if (!br) {
		munmap(bufs, (size_t)NBUFS * BUF_SIZE);
		bufs = NULL;
		return 0;
	}
#else
	// liburing before 2.4 has no io_uring_setup_buf_ring: map the ring
	// ourselves and register it, which is what that helper does.
	size_t rsz = NBUFS * sizeof(struct io_uring_buf);
	void *mem = mmap(NULL, rsz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die(NAME, "mmap buffer ring", errno);
	struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)mem, .ring_entries = NBUFS, .bgid = BGID};
	if (io_uring_register_buf_ring(&ring, &reg, 0) < 0) {
		munmap(mem, rsz);
		munmap(bufs, (size_t)NBUFS * BUF_SIZE);
		bufs = NULL;
		return 0;
	}
	br = mem;
	io_uring_buf_ring_init(br);
#endif
	for (int i = 0; i < NBUFS; i++)
		buf_return(i);
	bufring_publish();
	return 1;
}

// bufring_free unmaps the provided buffers and their ring; call it after
// io_uring_queue_exit, when the kernel can no longer pick or fill one.
static void bufring_free(void) {
	if (!bufs)
		return;
	munmap(br, NBUFS * sizeof(struct io_uring_buf));
	munmap(bufs, (size_t)NBUFS * BUF_SIZE);
}

// --- requests -------------------------------------------------------------------

static void arm_accept(void) {
	struct io_uring_sqe *s = sqe();
	if (accept_multi)
		io_uring_prep_multishot_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
	else
		io_uring_prep_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(s, tag(K_ACCEPT, lfd, 0));
}

static void arm_recv(int fd, struct conn *c) {
	struct io_uring_sqe *s = sqe();
	if (use_bufring) {
		io_uring_prep_recv_multishot(s, fd, NULL, 0, 0);
		s->flags |= IOSQE_BUFFER_SELECT;
		s->buf_group = BGID;
	} else {
		if (c->rbuf.cap < BUF_SIZE) {
			char *p = realloc(c->rbuf.p, BUF_SIZE);
			if (!p)
				die(NAME, "recv buffer", ENOMEM);
			c->rbuf.p = p;
			c->rbuf.cap = BUF_SIZE;
		}
		io_uring_prep_recv(s, fd, c->rbuf.p, c->rbuf.cap, 0);
	}
	io_uring_sqe_set_data64(s, tag(K_RECV, fd, c->gen));
	c->recv_armed = 1;
	c->cancel_sent = 0;
	c->starved = 0;
}

static void cancel_recv(int fd, struct conn *c) {
	if (!c->recv_armed || c->cancel_sent)
		return;
	struct io_uring_sqe *s = sqe();
	io_uring_prep_cancel64(s, tag(K_RECV, fd, c->gen), 0);
	io_uring_sqe_set_data64(s, tag(K_CANCEL, fd, c->gen));
	c->cancel_sent = 1;
}

static void submit_send(int fd, struct conn *c) {
	struct io_uring_sqe *s = sqe();
	io_uring_prep_send(s, fd, c->send_p + c->send_off, c->send_len - c->send_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(s, tag(K_SEND, fd, c->gen));
	c->sending = 1;
}

// --- connections -------------------------------------------------------------

// conn_maybe_close closes the fd once the connection is closing (or has
// seen EOF with everything echoed) and no request of it is in the kernel.
static void conn_maybe_close(int fd, struct conn *c) {
	if (c->eof && !c->sending && buf_pending(&c->q) == 0)
		c->closing = 1;
	if (!c->closing)
		return;
	cancel_recv(fd, c);
	if (c->recv_armed || c->sending)
		return; // their final CQEs call back here
	close(fd);
	buf_free(&c->sbuf);
	buf_free(&c->q);
	buf_free(&c->rbuf);
	uint32_t gen = c->gen;
	*c = (struct conn){.gen = gen};
}

// start_send sends the queue, if any: it becomes sbuf (swapped, no copy) and
// the queue starts empty; a paused recv resumes.
static void start_send(int fd, struct conn *c) {
	if (buf_pending(&c->q) == 0)
		return;
	struct buf t = c->sbuf;
	c->sbuf = c->q;
	c->q = t;
	c->q.off = c->q.len = 0;
	if (c->q.cap > 4 * BUF_SIZE)
		buf_free(&c->q); // a burst is over: give its memory back
	c->send_bid = -1;
	c->send_p = c->sbuf.p + c->sbuf.off;
	c->send_off = 0;
	c->send_len = buf_pending(&c->sbuf);
	submit_send(fd, c);
	if (c->paused) {
		c->paused = 0;
		if (!c->recv_armed && !c->eof && !c->closing)
			arm_recv(fd, c);
	}
}

// on_data echoes n received bytes at p; bid is their provided buffer or -1.
// It sends them directly when nothing is in flight or queued, else queues a
// copy (and the provided buffer goes back to the ring).
static void on_data(int fd, struct conn *c, char *p, size_t n, int bid) {
	if (c->closing) {
		if (bid >= 0)
			buf_return(bid);
		return;
	}
	if (!c->sending && buf_pending(&c->q) == 0) {
		if (bid >= 0) {
			c->send_bid = bid;
			c->send_p = p;
		} else {
			// One-shot path: the recv buffer becomes the send buffer and
			// the next recv gets the old send buffer.
			struct buf t = c->sbuf;
			c->sbuf = c->rbuf;
			c->rbuf = t;
			c->sbuf.off = 0;
			c->sbuf.len = n;
			c->send_bid = -1;
			c->send_p = c->sbuf.p;
		}
		c->send_off = 0;
		c->send_len = n;
		submit_send(fd, c);
		return;
	}
	int ok = buf_append(&c->q, p, n);
	if (bid >= 0)
		buf_return(bid);
	if (!ok) {
		c->closing = 1;
		return;
	}
	if (buf_pending(&c->q) > HIGH_WATER && !c->paused) {
		c->paused = 1;
		cancel_recv(fd, c);
	}
}

static void on_recv(int fd, struct conn *c, struct io_uring_cqe *cqe) {
	int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
	int bid = (cqe->flags & IORING_CQE_F_BUFFER) ? (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT) : -1;
	int res = cqe->res;
	if (!more) {
		c->recv_armed = 0;
		c->cancel_sent = 0;
	}
	if (res > 0) {
		char *p = bid >= 0 ? bufs + (size_t)bid * BUF_SIZE : c->rbuf.p;
		on_data(fd, c, p, (size_t)res, bid);
	} else {
		if (bid >= 0)
			buf_return(bid);
		if (res == 0) {
			c->eof = 1;
		} else if (res == -ENOBUFS) {
			// The ring ran dry: wait for buffers to come back.
			if (!c->closing && !c->paused && !c->eof) {
				if (nstarved == capstarved) {
					capstarved = capstarved ? 2 * capstarved : 64;
					starved = realloc(starved, capstarved * sizeof *starved);
					if (!starved)
						die(NAME, "starved list", ENOMEM);
				}
				starved[nstarved++] = fd;
				c->starved = 1;
			}
			return;
		} else if (res == -EINVAL && use_bufring && !more) {
			// This kernel has buffer rings but not multishot recv (5.19):
			// every connection moves to one-shot recv.
			use_bufring = 0;
			fprintf(stderr, NAME ": multishot recv refused (EINVAL); using one-shot recv\n");
		} else if (res == -ECANCELED && !c->closing) {
			// Our own cancel: the queue passed HIGH_WATER.
		} else {
			c->closing = 1; // a reset or another error
		}
	}
	if (!c->recv_armed && !c->closing && !c->eof && !c->paused)
		arm_recv(fd, c);
	conn_maybe_close(fd, c);
}

static void on_send(int fd, struct conn *c, int res) {
	c->sending = 0;
	if (res > 0) {
		c->send_off += (size_t)res;
		if (c->send_off < c->send_len && !c->closing) {
			submit_send(fd, c); // short send: the rest
			return;
		}
	} else {
		c->closing = 1; // EPIPE, ECONNRESET, or a send that took nothing
	}
	if (c->send_bid >= 0) {
		buf_return(c->send_bid);
		c->send_bid = -1;
	} else {
		c->sbuf.off = c->sbuf.len = 0;
	}
	c->send_p = NULL;
	c->send_off = c->send_len = 0;
	if (!c->closing)
		start_send(fd, c);
	conn_maybe_close(fd, c);
}

static void on_accept(struct io_uring_cqe *cqe) {
	int res = cqe->res;
	int more = (cqe->flags & IORING_CQE_F_MORE) != 0;
	if (res >= 0) {
		struct conn *c = conn_get(res);
		if (!c) {
			close(res);
		} else {
			if (c->open) {
				fprintf(stderr, NAME ": fd %d accepted while still open\n", res);
				abort();
			}
			echo_nodelay(res);
			c->gen = (c->gen + 1) & GEN_MASK;
			c->open = 1;
			c->send_bid = -1;
			arm_recv(res, c);
		}
	}
	if (more || stopping)
		return;
	if (res == -EINVAL && accept_multi) {
		accept_multi = 0;
		fprintf(stderr, NAME ": multishot accept refused (EINVAL); using one-shot accept\n");
	}
	if (res == -EMFILE || res == -ENFILE || res == -ENOMEM || res == -ENOBUFS) {
		struct io_uring_sqe *s = sqe();
		io_uring_prep_timeout(s, &emfile_pause, 0, 0);
		io_uring_sqe_set_data64(s, tag(K_TIMEOUT, lfd, 0));
		return;
	}
	arm_accept();
}

// arm_signal polls the signalfd (one-shot POLL_ADD); the stop request is
// read with read(2) when it fires, on this thread. (A READ request on a
// signalfd would be done by an io-wq worker thread, not by this one.)
static void arm_signal(void) {
	struct io_uring_sqe *s = sqe();
	io_uring_prep_poll_add(s, sfd, POLLIN);
	io_uring_sqe_set_data64(s, tag(K_SIGNAL, sfd, 0));
}

static void on_cqe(struct io_uring_cqe *cqe) {
	uint64_t t = io_uring_cqe_get_data64(cqe);
	switch (tag_kind(t)) {
	case K_ACCEPT:
		on_accept(cqe);
		return;
	case K_SIGNAL:
		if (cqe->res > 0 && read(sfd, &siginfo, sizeof siginfo) == (ssize_t)sizeof siginfo)
			stopping = 1;
		else
			arm_signal();
		return;
	case K_TIMEOUT:
		if (!stopping)
			arm_accept();
		return;
	case K_CANCEL:
		return; // the recv's own CQE says what happened
	case K_RECV:
	case K_SEND:
		break;
	default:
		fprintf(stderr, NAME ": CQE with unknown tag %#llx\n", (unsigned long long)t);
		abort();
	}
	int fd = tag_fd(t);
	struct conn *c = (size_t)fd < nconns ? &conns[fd] : NULL;
	if (!c || !c->open || c->gen != tag_gen(t)) {
		// A request's fd is closed only after its last CQE; this cannot be.
		fprintf(stderr, NAME ": CQE %#llx (res %d) for a closed connection\n", (unsigned long long)t, cqe->res);
		abort();
	}
	if (tag_kind(t) == K_RECV)
		on_recv(fd, c, cqe);
	else
		on_send(fd, c, cqe->res);
}

// rearm_starved re-arms the recvs that found the buffer ring empty, now that
// this turn returned buffers.
static void rearm_starved(void) {
	size_t n = nstarved;
	nstarved = 0;
	for (size_t i = 0; i < n; i++) {
		int fd = starved[i];
		struct conn *c = &conns[fd];
		if (c->open && c->starved && !c->recv_armed && !c->closing && !c->eof && !c->paused)
			arm_recv(fd, c);
	}
}

static const char *ring_setup(void) {
	static const struct {
		unsigned flags;
		const char *name;
	} tries[] = {
		{IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, "SINGLE_ISSUER|DEFER_TASKRUN"},
		{IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
		{0, "no flags"},
	};
	int rc = 0;
	for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
		struct io_uring_params p = {.flags = tries[i].flags | IORING_SETUP_CQSIZE, .cq_entries = CQ_ENTRIES};
		rc = io_uring_queue_init_params(SQ_ENTRIES, &ring, &p);
		if (rc == 0)
			return tries[i].name;
		if (rc != -EINVAL)
			break;
	}
	die(NAME, "io_uring_queue_init", rc);
}

int main(int argc, char **argv) {
	// --recv multishot|oneshot is this server's own flag; the rest are the
	// peers' (echo_common.h).
	int force_oneshot = 0;
	int n = 1, gather = 0;
	unsigned last = 0; // CQEs the last turn handled, for --gather
	for (int i = 1; i < argc; i++) {
		const char *v = NULL;
		int skip = 0;
		if (strcmp(argv[i], "--gather") == 0) {
			gather = 1;
			continue;
		}
		if (strcmp(argv[i], "--recv") == 0 && i + 1 < argc)
			v = argv[i + 1], skip = 1;
		else if (strncmp(argv[i], "--recv=", 7) == 0)
			v = argv[i] + 7;
		if (v) {
			if (strcmp(v, "oneshot") == 0)
				force_oneshot = 1;
			else if (strcmp(v, "multishot") != 0) {
				fprintf(stderr, NAME ": --recv %s: want multishot or oneshot\n", v);
				return 2;
			}
			i += skip;
			continue;
		}
		argv[n++] = argv[i];
	}
	argc = n;
	struct echo_opts o = echo_parse(NAME, argc, argv);

	sfd = echo_signalfd(NAME, 1);
	const char *flags = ring_setup();
	use_bufring = !force_oneshot && bufring_setup();
	lfd = echo_listen(NAME, o, 0);
	const char *gathering = "";
	if (gather && !(ring.features & IORING_FEAT_EXT_ARG)) {
		gather = 0;
		gathering = ", --gather off (no IORING_FEAT_EXT_ARG)";
	} else if (gather)
		gathering = ", gathering batches";
	fprintf(stderr, NAME ": ring %s, recv %s, sq %d cq %d%s\n", flags,
		use_bufring ? "multishot from a provided-buffer ring" : "one-shot into per-connection buffers",
		SQ_ENTRIES, CQ_ENTRIES, gathering);

	arm_signal();
	arm_accept();
	while (!stopping) {
		bufring_publish();
		rearm_starved();
		int rc;
		if (gather && last > 1 && io_uring_sq_ready(&ring) > 0 && io_uring_cq_ready(&ring) == 0) {
			struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = GATHER_NS};
			struct io_uring_cqe *first;
			rc = io_uring_submit_and_wait_timeout(&ring, &first, last, &ts, NULL);
		} else
			rc = io_uring_submit_and_wait(&ring, 1);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME)
			die(NAME, "io_uring_submit_and_wait", rc);
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe) {
			on_cqe(cqe);
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
		last = seen;
	}

	// Tearing the ring down cancels and waits for every request still in
	// the kernel; only then are the fds closed and the buffers freed.
	io_uring_queue_exit(&ring);
	bufring_free();
	for (size_t fd = 0; fd < nconns; fd++) {
		struct conn *c = &conns[fd];
		if (!c->open)
			continue;
		close((int)fd);
		buf_free(&c->sbuf);
		buf_free(&c->q);
		buf_free(&c->rbuf);
	}
	free(conns);
	free(starved);
	close(lfd);
	close(sfd);
	return 0;
}
