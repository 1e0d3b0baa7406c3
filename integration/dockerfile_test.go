package integration_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// No Docker engine runs where these tests do, so the image is never built
// here. What the tests can check without one: how `docker run` would put
// echod's command line together from the Dockerfile's ENTRYPOINT and CMD,
// run with the real echod binary; and that the build stage's own go build
// line, run outside Docker, stamps the version it is given.

// dockerStage is one FROM ... stage: its instructions, continuation lines
// joined, comments dropped.
type dockerStage struct{ instrs []string }

// parseDockerfile reads the stages of the Dockerfile at path.
func parseDockerfile(t *testing.T, path string) []dockerStage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages []dockerStage
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if l, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(l + " ")
			continue
		}
		cur.WriteString(line)
		instr := cur.String()
		cur.Reset()
		if strings.HasPrefix(strings.ToUpper(instr), "FROM ") {
			stages = append(stages, dockerStage{})
		}
		if len(stages) == 0 {
			continue // the syntax line and ARGs before the first FROM
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, instr)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(stages) < 2 {
		t.Fatalf("%s: %d stages, want a build stage and a final one", path, len(stages))
	}
	return stages
}

// exec returns the JSON (exec-form) argument list of the stage's last
// instruction named kw (ENTRYPOINT, CMD), as Docker uses only the last.
func (s dockerStage) exec(t *testing.T, kw string) []string {
	t.Helper()
	var args []string
	found := false
	for _, in := range s.instrs {
		if rest, ok := strings.CutPrefix(in, kw+" "); ok {
			args, found = nil, true
			if err := json.Unmarshal([]byte(rest), &args); err != nil {
				t.Fatalf("%s is not in exec (JSON) form: %q: %v", kw, in, err)
			}
		}
	}
	if !found {
		t.Fatalf("the final stage has no %s", kw)
	}
	return args
}

func countListen(args []string) int {
	n := 0
	for _, a := range args {
		if a == "--listen" || strings.HasPrefix(a, "--listen=") {
			n++
		}
	}
	return n
}

// TestDockerfileListen: `docker run echod` serves the default 0.0.0.0:7007,
// and `docker run echod --listen ADDR` serves ADDR only. Docker replaces CMD
// with the run's arguments and keeps ENTRYPOINT, so the second case is run
// here with the real echod: ENTRYPOINT's flags plus a user's --listen
// 127.0.0.1:0 must bind exactly one address.
func TestDockerfileListen(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join("..", "Dockerfile"))
	final := stages[len(stages)-1]
	entry, cmd := final.exec(t, "ENTRYPOINT"), final.exec(t, "CMD")
	if len(entry) == 0 || entry[0] != "/usr/local/bin/echod" {
		t.Fatalf("ENTRYPOINT %q does not start echod", entry)
	}
	if countListen(entry) != 0 {
		t.Fatalf("ENTRYPOINT %q holds --listen: a user's --listen would add a listener, not replace it", entry)
	}
	if def := append(slices.Clone(entry), cmd...); countListen(def) != 1 || !slices.Contains(def, "0.0.0.0:7007") {
		t.Fatalf("docker run with no arguments runs %q: want one --listen 0.0.0.0:7007", def)
	}
	// launch adds its own --log-format json; the ENTRYPOINT's is the same.
	d := launch(t, exec.Command(echodPath), append(slices.Clone(entry[1:]), "--listen", "127.0.0.1:0")...)
	if err := d.waitListening(); err != nil {
		t.Fatal(err)
	}
	if len(d.addrs) != 1 || !strings.HasPrefix(d.addrs[0], "127.0.0.1:") {
		t.Fatalf("ENTRYPOINT + --listen 127.0.0.1:0 serves %q: want that address only", d.addrs)
	}
	d.stop()
}

// TestDockerfileHealthcheck: the image's HEALTHCHECK is echod --probe of
// the address the default CMD serves, finishing inside Docker's timeout,
// and run with the real echod it says healthy (0) while an echod serves
// there and unhealthy (1) once it has stopped. The daemon listens on a
// port of its own choosing, so the check's port is swapped for it.
func TestDockerfileHealthcheck(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join("..", "Dockerfile"))
	final := stages[len(stages)-1]
	entry, cmd := final.exec(t, "ENTRYPOINT"), final.exec(t, "CMD")
	var opts, check []string
	for _, in := range final.instrs {
		rest, ok := strings.CutPrefix(in, "HEALTHCHECK ")
		if !ok {
			continue
		}
		o, js, ok := strings.Cut(rest, "CMD ")
		if !ok {
			t.Fatalf("HEALTHCHECK without CMD: %q", in)
		}
		check = nil
		if err := json.Unmarshal([]byte(js), &check); err != nil {
			t.Fatalf("HEALTHCHECK CMD is not in exec (JSON) form (the image has no shell): %q: %v", in, err)
		}
		opts = strings.Fields(o)
	}
	if check == nil {
		t.Fatal("the final stage has no HEALTHCHECK")
	}
	i := slices.Index(check, "--probe")
	if len(check) != 3 || check[0] != entry[0] || i != 1 {
		t.Fatalf("HEALTHCHECK runs %q: want [%s --probe ADDR]", check, entry[0])
	}
	served := cmd[slices.Index(cmd, "--listen")+1]
	_, servedPort, _ := strings.Cut(served, ":")
	host, port, err := net.SplitHostPort(check[2])
	if err != nil || port != servedPort || !net.ParseIP(host).IsLoopback() {
		t.Fatalf("HEALTHCHECK probes %q, CMD serves %q: want loopback on the same port", check[2], served)
	}
	timeout := 30 * time.Second // Docker's default
	for _, o := range opts {
		if v, ok := strings.CutPrefix(o, "--timeout="); ok {
			if timeout, err = time.ParseDuration(v); err != nil {
				t.Fatalf("HEALTHCHECK %s: %v", o, err)
			}
		}
	}
	if timeout <= 2*time.Second {
		t.Fatalf("HEALTHCHECK --timeout %v: a probe may take 2s (--probe-timeout's default)", timeout)
	}

	d := launch(t, exec.Command(echodPath), "--listen", "127.0.0.1:0")
	if err := d.waitListening(); err != nil {
		t.Fatal(err)
	}
	_, live, _ := strings.Cut(d.addrs[0], ":")
	probe := func() (int, string) {
		c := exec.Command(echodPath, check[1], net.JoinHostPort(host, live))
		out, err := c.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return c.ProcessState.ExitCode(), string(out)
	}
	if code, out := probe(); code != 0 {
		t.Fatalf("health check against a serving echod: exit %d, %q; want 0", code, out)
	}
	d.stop()
	if code, out := probe(); code != 1 || !strings.Contains(out, "connection refused") {
		t.Fatalf("health check after echod stopped: exit %d, %q; want 1, connection refused", code, out)
	}
}

// TestDockerfileStampsVersion runs the build stage's go build line through
// the shell, as the image's RUN would with the VERSION build arg set, and
// checks that the binary reports that version (the build context has no
// .git, so this stamp is the only version the image can report).
//
// The line runs with a stand-in go first on PATH that records the
// arguments and environment the shell hands it, so the quoting and the
// expansion of ${VERSION} are the Dockerfile's own. The recorded go build
// then runs for real, less -trimpath and with this machine's CGO setting:
// with them it rebuilds the standard library (minutes on a busy 2-core
// machine), and neither changes what -X stamps.
func TestDockerfileStampsVersion(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join("..", "Dockerfile"))
	var build string
	hasArg := false
	for _, in := range stages[0].instrs {
		if in == "ARG VERSION" || strings.HasPrefix(in, "ARG VERSION=") {
			hasArg = true
		}
		if rest, ok := strings.CutPrefix(in, "RUN "); ok && strings.Contains(rest, "go build") {
			build = rest
		}
	}
	if !hasArg || build == "" {
		t.Fatalf("the build stage lacks ARG VERSION (%v) or a RUN go build line (%q)", hasArg, build)
	}

	// The stand-in go writes its environment's CGO_ENABLED, then one
	// argument per line.
	shim := t.TempDir()
	record := filepath.Join(shim, "args")
	script := "#!/bin/sh\necho \"CGO_ENABLED=$CGO_ENABLED\" > " + record + "\nfor a in \"$@\"; do echo \"$a\" >> " + record + "; done\n"
	if err := os.WriteFile(filepath.Join(shim, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	const stamp = "v0.0.0-dockerfile-test"
	c := exec.Command("sh", "-c", build)
	c.Dir = ".."
	c.Env = append(os.Environ(), "VERSION="+stamp, "PATH="+shim+":"+os.Getenv("PATH"))
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("sh -c %q: %v\n%s", build, err, out)
	}
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("the build line never ran go: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	env, args := lines[0], lines[1:]
	if env != "CGO_ENABLED=0" {
		t.Errorf("go ran with %s: the final image has no libc, want CGO_ENABLED=0", env)
	}
	if len(args) < 1 || args[0] != "build" || !slices.Contains(args, "-trimpath") {
		t.Errorf("go ran with %q: want build with -trimpath", args)
	}
	out := slices.Index(args, "-o")
	if out < 0 || out+1 >= len(args) || args[out+1] != "/out/echod" {
		t.Fatalf("go ran with %q: want -o /out/echod, which the final stage copies", args)
	}

	bin := filepath.Join(t.TempDir(), "echod")
	runArgs := slices.Clone(args)
	runArgs[out+1] = bin
	runArgs = slices.DeleteFunc(runArgs, func(a string) bool { return a == "-trimpath" })
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	gb := exec.Command(goTool, runArgs...)
	gb.Dir = ".."
	if out, err := gb.CombinedOutput(); err != nil {
		t.Fatalf("go %q: %v\n%s", runArgs, err, out)
	}
	v, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", bin, err)
	}
	if !strings.HasPrefix(string(v), "echod "+stamp+" go") {
		t.Fatalf("--version printed %q, want the stamp %q", v, stamp)
	}
}
