package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestOf(t *testing.T) {
	info := func(v string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{Main: debug.Module{Version: v}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, tc := range []struct {
		name, stamped string
		read          func() (*debug.BuildInfo, bool)
		want          string
	}{
		{"stamp wins", "v1.2.3", info("(devel)", "vcs.revision", "0123456789abcdef"), "v1.2.3"},
		{"go install @v", "", info("v0.4.0"), "v0.4.0"},
		{"checkout", "", info("(devel)", "vcs.revision", "0123456789abcdef", "vcs.modified", "false"), "(devel) 0123456789ab"},
		{"dirty checkout", "", info("(devel)", "vcs.revision", "0123456789abcdef", "vcs.modified", "true"), "(devel) 0123456789ab-dirty"},
		{"no module version", "", info(""), "(devel)"},
		{"no build info", "", none, "(unknown)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := of(tc.stamped, tc.read); got != tc.want {
				t.Errorf("of(%q) = %q, want %q", tc.stamped, got, tc.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	got := String("echod")
	if !strings.HasPrefix(got, "echod ") || !strings.HasSuffix(got, " "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH) {
		t.Errorf("String(echod) = %q", got)
	}
}
