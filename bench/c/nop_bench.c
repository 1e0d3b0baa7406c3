// nop_bench: the C peer of ring/'s BenchmarkNop and BenchmarkPollCycle,
// written against liburing (Debian's liburing-dev) so the Go binding's cost
// can be reported as a ratio measured on the same machine in the same run.
//
// Build and run:  make -C bench/c run     (or: cc -O2 -o nop_bench nop_bench.c -luring)
// Usage:          ./nop_bench [nops-per-run]   (default 2,000,000)
//
// For each ring setup (default, COOP_TASKRUN, SINGLE_ISSUER|DEFER_TASKRUN)
// and batch size (1, 32) it prepares `batch` NOPs, submits them with one
// io_uring_enter ("submit": io_uring_submit then peek; "submit-wait":
// io_uring_submit_and_wait(batch) then peek) and reaps them with one CQ head
// advance, exactly like the Go loop. It prints the median of 3 runs, as wall
// ns and as this thread's CPU ns per NOP, then the same for the socketpair
// POLL_ADD round trip (arm, peer writes, reap, read) per cycle.
#define _GNU_SOURCE
#include <liburing.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IORING_SETUP_COOP_TASKRUN
#define IORING_SETUP_COOP_TASKRUN (1U << 8)
#endif
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

static double clock_ns(clockid_t id) {
	struct timespec ts;
	clock_gettime(id, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

// A run's cost: wall time, and this thread's CPU time (user+system), which
// other processes on a busy machine inflate far less. ring/'s benchmarks
// report the same pair (ns/nop and cpu-ns/nop).
struct cost {
	double wall, cpu;
};

static struct cost cost_start(void) {
	return (struct cost){clock_ns(CLOCK_MONOTONIC), clock_ns(CLOCK_THREAD_CPUTIME_ID)};
}

static struct cost cost_per(struct cost start, long ops) {
	return (struct cost){(clock_ns(CLOCK_MONOTONIC) - start.wall) / ops,
			     (clock_ns(CLOCK_THREAD_CPUTIME_ID) - start.cpu) / ops};
}

static void die(const char *what, int err) {
	fprintf(stderr, "nop_bench: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static int cmp_double(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

// reap_batch collects exactly want CQEs, waiting only if some are missing.
static void reap_batch(struct io_uring *ring, unsigned want) {
	struct io_uring_cqe *cqes[64];
	unsigned got = 0;
	while (got < want) {
		unsigned n = io_uring_peek_batch_cqe(ring, cqes, want - got);
		if (n == 0) {
			int ret = io_uring_submit_and_wait(ring, want - got);
			if (ret < 0 && ret != -EINTR)
				die("submit_and_wait", ret);
			continue;
		}
		io_uring_cq_advance(ring, n);
		got += n;
	}
}

// run_nops returns the cost per NOP of one run of total NOPs; wall < 0 when
// this kernel does not support the setup flags.
static struct cost run_nops(unsigned flags, unsigned batch, int wait, long total) {
	struct io_uring ring;
	int ret = io_uring_queue_init(64, &ring, flags);
	if (ret < 0)
		return (struct cost){-1, -1};
	long iters = total / batch;
	struct cost start = cost_start();
	for (long i = 0; i < iters; i++) {
		for (unsigned j = 0; j < batch; j++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			if (!sqe)
				die("get_sqe", EBUSY);
			io_uring_prep_nop(sqe);
			sqe->user_data = j;
		}
		ret = wait ? io_uring_submit_and_wait(&ring, batch) : io_uring_submit(&ring);
		if (ret < 0)
			die("submit", ret);
		reap_batch(&ring, batch);
	}
	struct cost c = cost_per(start, iters * batch);
	io_uring_queue_exit(&ring);
	return c;
}

// run_poll returns the cost per arm -> peer write -> reap -> read cycle.
static struct cost run_poll(unsigned flags, long cycles) {
	struct io_uring ring;
	int sv[2];
	char buf[8];
	if (io_uring_queue_init(8, &ring, flags) < 0)
		return (struct cost){-1, -1};
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
		die("socketpair", errno);
	struct cost start = cost_start();
	for (long i = 0; i < cycles; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		io_uring_prep_poll_add(sqe, sv[0], POLLIN);
		sqe->user_data = i;
		int ret = io_uring_submit(&ring);
		if (ret < 0)
			die("submit", ret);
		if (write(sv[1], "x", 1) != 1)
			die("write", errno);
		struct io_uring_cqe *cqe;
		while ((ret = io_uring_wait_cqe(&ring, &cqe)) == -EINTR)
			;
		if (ret < 0 || !(cqe->res & POLLIN))
			die("wait_cqe", ret < 0 ? ret : EIO);
		io_uring_cqe_seen(&ring, cqe);
		if (read(sv[0], buf, sizeof buf) != 1)
			die("read", errno);
	}
	struct cost c = cost_per(start, cycles);
	close(sv[0]);
	close(sv[1]);
	io_uring_queue_exit(&ring);
	return c;
}

// median3 returns the median wall and the median CPU cost of three runs.
static struct cost median3(struct cost v[3]) {
	double w[3] = {v[0].wall, v[1].wall, v[2].wall}, c[3] = {v[0].cpu, v[1].cpu, v[2].cpu};
	qsort(w, 3, sizeof w[0], cmp_double);
	qsort(c, 3, sizeof c[0], cmp_double);
	return (struct cost){w[1], c[1]};
}

int main(int argc, char **argv) {
	long total = argc > 1 ? atol(argv[1]) : 2000000;
	static const struct {
		const char *name;
		unsigned flags;
	} setups[] = {
		{"default", 0},
		{"coop", IORING_SETUP_COOP_TASKRUN},
		{"single-issuer+defer", IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN},
	};
	static const unsigned batches[] = {1, 32};
	for (size_t s = 0; s < sizeof setups / sizeof setups[0]; s++) {
		for (size_t b = 0; b < 2; b++) {
			for (int wait = 0; wait < 2; wait++) {
				struct cost v[3];
				for (int k = 0; k < 3; k++)
					v[k] = run_nops(setups[s].flags, batches[b], wait, total);
				if (v[0].wall < 0) {
					printf("nop %s/batch=%u/%s: setup not supported\n", setups[s].name,
					       batches[b], wait ? "submit-wait" : "submit");
					continue;
				}
				struct cost m = median3(v);
				printf("nop %s/batch=%u/%s: %.1f ns/nop %.1f cpu-ns/nop\n", setups[s].name,
				       batches[b], wait ? "submit-wait" : "submit", m.wall, m.cpu);
			}
		}
	}
	for (size_t s = 0; s < sizeof setups / sizeof setups[0]; s++) {
		struct cost v[3];
		for (int k = 0; k < 3; k++)
			v[k] = run_poll(setups[s].flags, total / 10);
		if (v[0].wall < 0) {
			printf("poll-cycle %s: setup not supported\n", setups[s].name);
			continue;
		}
		struct cost m = median3(v);
		printf("poll-cycle %s: %.1f ns/op %.1f cpu-ns/op\n", setups[s].name, m.wall, m.cpu);
	}
	return 0;
}
