// syscount: count the system calls a running process makes over a window,
// for scripts/compare.sh on machines without perf (a benchmark box with
// nothing installed). It opens the raw_syscalls:sys_enter tracepoint as a
// counter on each thread the process has when it starts, as
// `perf stat -e raw_syscalls:sys_enter -p PID` does (threads started later
// are not counted by either), and prints the total in perf stat's CSV form
// so that the same parser reads both:
//
//	syscount PID MILLISECONDS >FILE   # FILE: "N,,raw_syscalls:sys_enter"
//
// Needs root (or perf_event_paranoid <= 1) and tracefs mounted at
// /sys/kernel/tracing or /sys/kernel/debug/tracing.
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 4096

static long tracepoint_id(void) {
	static const char *paths[] = {
		"/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
		"/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
	};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		FILE *f = fopen(paths[i], "r");
		long id;
		if (f == NULL)
			continue;
		int ok = fscanf(f, "%ld", &id) == 1;
		fclose(f);
		if (ok)
			return id;
	}
	return -1;
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: syscount PID MILLISECONDS\n");
		return 2;
	}
	char *end;
	long pid = strtol(argv[1], &end, 10);
	if (*end != '\0' || pid <= 0) {
		fprintf(stderr, "syscount: bad PID %s\n", argv[1]);
		return 2;
	}
	long ms = strtol(argv[2], &end, 10);
	if (*end != '\0' || ms <= 0) {
		fprintf(stderr, "syscount: bad window %s (milliseconds)\n", argv[2]);
		return 2;
	}
	long id = tracepoint_id();
	if (id < 0) {
		fprintf(stderr, "syscount: no raw_syscalls:sys_enter tracepoint (is tracefs mounted?)\n");
		return 1;
	}
	char dir[64];
	snprintf(dir, sizeof dir, "/proc/%ld/task", pid);
	DIR *d = opendir(dir);
	if (d == NULL) {
		fprintf(stderr, "syscount: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	static int fds[MAX_THREADS];
	int n = 0;
	struct perf_event_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.size = sizeof attr;
	attr.type = PERF_TYPE_TRACEPOINT;
	attr.config = (uint64_t)id;
	for (struct dirent *e; (e = readdir(d)) != NULL && n < MAX_THREADS;) {
		if (e->d_name[0] == '.')
			continue;
		long tid = strtol(e->d_name, NULL, 10);
		int fd = (int)syscall(SYS_perf_event_open, &attr, (pid_t)tid, -1, -1, 0UL);
		if (fd < 0) {
			if (errno == ESRCH)
				continue; // the thread ended meanwhile
			fprintf(stderr, "syscount: perf_event_open(thread %ld): %s\n", tid, strerror(errno));
			return 1;
		}
		fds[n++] = fd;
	}
	closedir(d);
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
	uint64_t total = 0;
	for (int i = 0; i < n; i++) {
		uint64_t v;
		if (read(fds[i], &v, sizeof v) == (ssize_t)sizeof v)
			total += v;
		close(fds[i]);
	}
	printf("%" PRIu64 ",,raw_syscalls:sys_enter\n", total);
	return 0;
}
