package integration_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The Docker seccomp profile shipped in contrib/ is tested by running echod
// under it: TestMain, seeing profileEnv, compiles the profile into a
// classic-BPF filter, installs it and execs profileExecEnv's binary, the way
// runc applies a profile before it execs a container's entrypoint.
const (
	profileEnv     = "ECHOD_TEST_SECCOMP_PROFILE" // path of a Docker seccomp profile
	profileExecEnv = "ECHOD_TEST_SECCOMP_EXEC"    // binary to exec under it
	profilePath    = "../contrib/seccomp-io_uring.json"
)

// dockerProfile is the part of Docker's seccomp profile format that ours
// uses; anything else in it fails the tests rather than being ignored.
type dockerProfile struct {
	DefaultAction   string `json:"defaultAction"`
	DefaultErrnoRet *uint  `json:"defaultErrnoRet"`
	ArchMap         []struct {
		Architecture     string   `json:"architecture"`
		SubArchitectures []string `json:"subArchitectures"`
	} `json:"archMap"`
	Syscalls []dockerRule `json:"syscalls"`
}

type dockerRule struct {
	Comment  string      `json:"comment"`
	Names    []string    `json:"names"`
	Action   string      `json:"action"`
	ErrnoRet *uint       `json:"errnoRet"`
	Args     []dockerArg `json:"args"`
}

type dockerArg struct {
	Index    uint   `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo"`
	Op       string `json:"op"`
}

func loadProfile(path string) (*dockerProfile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p dockerProfile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &p, nil
}

// Classic BPF and seccomp constants (linux/filter.h, linux/seccomp.h).
const (
	bpfLdWAbs = 0x20 // BPF_LD | BPF_W | BPF_ABS
	bpfAndK   = 0x54 // BPF_ALU | BPF_AND | BPF_K
	bpfJeqK   = 0x15 // BPF_JMP | BPF_JEQ | BPF_K
	bpfRetK   = 0x06 // BPF_RET | BPF_K
	retAllow  = 0x7fff0000
	retErrno  = 0x00050000
	dataNr    = 0  // offsetof(struct seccomp_data, nr)
	dataArch  = 4  // offsetof(struct seccomp_data, arch)
	dataArgs  = 16 // offsetof(struct seccomp_data, args): 6 × u64
)

// compileProfile turns p into a filter for this architecture: a syscall is
// allowed or fails as its rule says, everything else fails with the default
// errno, a foreign architecture's calls with EPERM. Only what our profile
// needs is supported: ALLOW and ERRNO, and MASKED_EQ on an argument's low
// 32 bits.
func compileProfile(p *dockerProfile) ([]unix.SockFilter, error) {
	action := func(a string, errno *uint) (uint32, error) {
		switch a {
		case "SCMP_ACT_ALLOW":
			return retAllow, nil
		case "SCMP_ACT_ERRNO":
			if errno == nil || *errno > 0xffff {
				return 0, fmt.Errorf("%s without a valid errno", a)
			}
			return retErrno | uint32(*errno), nil
		}
		return 0, fmt.Errorf("action %q is not supported by this compiler", a)
	}
	deflt, err := action(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	prog := []unix.SockFilter{
		{Code: bpfLdWAbs, K: dataArch},
		{Code: bpfJeqK, Jt: 1, Jf: 0, K: auditArch},
		{Code: bpfRetK, K: retErrno | uint32(unix.EPERM)},
		{Code: bpfLdWAbs, K: dataNr},
	}
	seen := map[string]bool{}
	for _, r := range p.Syscalls {
		act, err := action(r.Action, r.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", r.Comment, err)
		}
		if len(r.Args) > 1 {
			return nil, fmt.Errorf("rule %q: more than one argument condition", r.Comment)
		}
		for _, name := range r.Names {
			if seen[name] {
				return nil, fmt.Errorf("%s appears in two rules", name)
			}
			seen[name] = true
			nr, ok := syscallNumbers[name]
			if !ok {
				return nil, fmt.Errorf("%s: no such system call on %s (or missing from syscallNumbers)", name, runtime.GOARCH)
			}
			if len(r.Args) == 0 {
				prog = append(prog,
					unix.SockFilter{Code: bpfJeqK, Jt: 0, Jf: 1, K: uint32(nr)},
					unix.SockFilter{Code: bpfRetK, K: act})
				continue
			}
			a := r.Args[0]
			if a.Op != "SCMP_CMP_MASKED_EQ" || a.Index > 5 || a.Value > 0xffffffff || a.ValueTwo > 0xffffffff {
				return nil, fmt.Errorf("%s: condition %+v is not supported by this compiler", name, a)
			}
			// A mask within 32 bits ignores the high word: checking the
			// low word (little-endian: first) decides.
			prog = append(prog,
				unix.SockFilter{Code: bpfJeqK, Jt: 0, Jf: 5, K: uint32(nr)},
				unix.SockFilter{Code: bpfLdWAbs, K: dataArgs + 8*uint32(a.Index)},
				unix.SockFilter{Code: bpfAndK, K: uint32(a.Value)},
				unix.SockFilter{Code: bpfJeqK, Jt: 0, Jf: 1, K: uint32(a.ValueTwo)},
				unix.SockFilter{Code: bpfRetK, K: act},
				unix.SockFilter{Code: bpfRetK, K: deflt})
		}
	}
	return append(prog, unix.SockFilter{Code: bpfRetK, K: deflt}), nil
}

// execUnderProfile is the launcher's side: install the profile's filter on
// every thread, then exec the binary with our arguments. It returns only on
// failure.
func execUnderProfile(path, binary string) error {
	p, err := loadProfile(path)
	if err != nil {
		return err
	}
	prog, err := compileProfile(p)
	if err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	const setModeFilter, flagTSYNC = 1, 1
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, setModeFilter, flagTSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if e != 0 {
		return fmt.Errorf("seccomp: %w", e)
	}
	if r != 0 {
		return fmt.Errorf("seccomp: thread %d could not be synchronised", r)
	}
	return syscall.Exec(binary, append([]string{binary}, os.Args[1:]...), os.Environ())
}

// TestSeccompProfileShape checks contrib/seccomp-io_uring.json without
// running anything: Docker's format, deny by default with EPERM, every name
// a real system call named once, io_uring's three calls allowed, and clone
// allowed only without namespace flags.
func TestSeccompProfileShape(t *testing.T) {
	if syscallNumbers == nil {
		t.Skipf("no syscall table for %s in this test", runtime.GOARCH)
	}
	p, err := loadProfile(profilePath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := compileProfile(p); err != nil {
		t.Fatal(err)
	}
	if p.DefaultAction != "SCMP_ACT_ERRNO" || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != uint(unix.EPERM) {
		t.Errorf("default: %s errno %v; want SCMP_ACT_ERRNO with EPERM (1), as Docker's", p.DefaultAction, p.DefaultErrnoRet)
	}
	allowed := map[string]bool{}
	for _, r := range p.Syscalls {
		if r.Action == "SCMP_ACT_ALLOW" && len(r.Args) == 0 {
			for _, n := range r.Names {
				allowed[n] = true
			}
		}
		if r.Comment == "" {
			t.Errorf("rule for %v has no comment saying why", r.Names)
		}
		if slices.Contains(r.Names, "clone") {
			const newNamespaces = 0x7e020000 // CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
			if len(r.Args) != 1 || r.Args[0].Value != newNamespaces || r.Args[0].ValueTwo != 0 {
				t.Errorf("clone rule %+v: want it allowed only without namespace flags", r)
			}
		}
	}
	for _, n := range []string{"io_uring_setup", "io_uring_enter", "io_uring_register"} {
		if !allowed[n] {
			t.Errorf("%s is not allowed: the profile's reason to exist", n)
		}
	}
	for _, n := range []string{"ptrace", "mount", "bpf", "unshare", "setns", "keyctl", "perf_event_open", "userfaultfd", "kexec_load"} {
		if allowed[n] {
			t.Errorf("%s is allowed; Docker's default denies it and echod does not need it", n)
		}
	}
}

// profileWithout writes a copy of the profile without the named calls.
func profileWithout(t *testing.T, drop ...string) string {
	t.Helper()
	b, err := os.ReadFile(profilePath)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, r := range raw["syscalls"].([]any) {
		rule := r.(map[string]any)
		var keep []any
		for _, n := range rule["names"].([]any) {
			if !slices.Contains(drop, n.(string)) {
				keep = append(keep, n)
			}
		}
		rule["names"] = keep
	}
	out, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// profileCommandEnv returns the environment that makes this test binary
// launch binary under the profile at path.
func profileCommandEnv(path, binary string) []string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return append(os.Environ(), profileEnv+"="+abs, profileExecEnv+"="+binary)
}

// applyProfileFromEnv is TestMain's hook: in a launcher it never returns.
func applyProfileFromEnv() error {
	path := os.Getenv(profileEnv)
	if path == "" {
		return nil
	}
	binary := os.Getenv(profileExecEnv)
	if binary == "" {
		return errors.New(profileEnv + " set without " + profileExecEnv)
	}
	return execUnderProfile(path, binary)
}
