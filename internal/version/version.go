// Package version says which build of a command is running, for --version
// and the startup log line of echod and echoload.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped is the version a build stamped in with the linker, for builds that
// have neither a module version nor VCS information to record: the Docker
// image, whose build context has no .git, sets it with
//
//	go build -ldflags "-X github.com/oneshot-io/oneshot/internal/version.Stamped=v1.2.3" ./cmd/echod
//
// Empty when not stamped.
var Stamped string

// String is what prog's --version prints: "prog VERSION GOVERSION OS/ARCH".
// VERSION is Stamped when set; otherwise the module version when built by
// `go install ...@vX`, "(devel)" for a build from a checkout, plus the VCS
// revision (12 digits, "-dirty" if modified) when the build recorded one.
func String(prog string) string {
	return fmt.Sprintf("%s %s %s %s/%s", prog, of(Stamped, debug.ReadBuildInfo), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// of is String's VERSION, from the stamp or the build information read.
func of(stamped string, read func() (*debug.BuildInfo, bool)) string {
	if stamped != "" {
		return stamped
	}
	v, rev, dirty := "(unknown)", "", false
	if bi, ok := read(); ok {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "-dirty"
		}
		v += " " + rev
	}
	return v
}
