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
// advance, exactly like the Go loop. It prints the median ns per NOP of 3
// runs, then the socketpair POLL_ADD round trip (arm, peer writes, reap,
// read) in ns per cycle.
#define _GNU_SOURCE
#include <liburing.h>
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

static double now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
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

// run_nops returns ns per NOP for one run of total NOPs.
static double run_nops(unsigned flags, unsigned batch, int wait, long total) {
	struct io_uring ring;
	int ret = io_uring_queue_init(64, &ring, flags);
	if (ret < 0)
		return -1; // setup not supported by this kernel
	long iters = total / batch;
	double start = now_ns();
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
	double ns = (now_ns() - start) / (double)(iters * batch);
	io_uring_queue_exit(&ring);
	return ns;
}

// run_poll returns ns per arm -> peer write -> reap -> read cycle.
static double run_poll(unsigned flags, long cycles) {
	struct io_uring ring;
	int sv[2];
	char buf[8];
	if (io_uring_queue_init(8, &ring, flags) < 0)
		return -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
		die("socketpair", errno);
	double start = now_ns();
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
	double ns = (now_ns() - start) / cycles;
	close(sv[0]);
	close(sv[1]);
	io_uring_queue_exit(&ring);
	return ns;
}

static double median3(double v[3]) {
	qsort(v, 3, sizeof v[0], cmp_double);
	return v[1];
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
				double v[3];
				for (int k = 0; k < 3; k++)
					v[k] = run_nops(setups[s].flags, batches[b], wait, total);
				if (v[0] < 0) {
					printf("nop %s/batch=%u/%s: setup not supported\n", setups[s].name,
					       batches[b], wait ? "submit-wait" : "submit");
					continue;
				}
				printf("nop %s/batch=%u/%s: %.1f ns/nop\n", setups[s].name, batches[b],
				       wait ? "submit-wait" : "submit", median3(v));
			}
		}
	}
	for (size_t s = 0; s < sizeof setups / sizeof setups[0]; s++) {
		double v[3];
		for (int k = 0; k < 3; k++)
			v[k] = run_poll(setups[s].flags, total / 10);
		if (v[0] < 0) {
			printf("poll-cycle %s: setup not supported\n", setups[s].name);
			continue;
		}
		printf("poll-cycle %s: %.1f ns/op\n", setups[s].name, median3(v));
	}
	return 0;
}
