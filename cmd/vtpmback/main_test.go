package main

import (
	"bytes"
	"strings"
	"testing"
)

// Usage errors exit 2 with the usage text; --help exits 0. Serving needs
// a Xen dom0 (e2e/xen runs it there).
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "--socket-dir is required"},
		{[]string{"--socket-dir", "/run/vtpm", "extra"}, 2, "--socket-dir is required"},
		{[]string{"--frobnicate"}, 2, "flag provided but not defined"},
		{[]string{"--help"}, 0, "usage: vtpmback"},
	} {
		var stderr bytes.Buffer
		if code := run(tc.args, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: exit %d, want %d; stderr %q", tc.args, code, tc.code, stderr.String())
		}
	}
}

func TestOpenSwtpmRefusesNonUUID(t *testing.T) {
	for _, u := range []string{"../../etc/passwd", "", "00000000-7E57-4000-8000-000000000001x"} {
		if _, _, err := openSwtpm(t.TempDir(), u); err == nil || !strings.Contains(err.Error(), "not a UUID") {
			t.Errorf("uuid %q: %v", u, err)
		}
	}
	if _, _, err := openSwtpm(t.TempDir(), "00000000-7e57-4000-8000-000000000001"); err == nil || !strings.Contains(err.Error(), "no swtpm for vTPM") {
		t.Errorf("missing socket: %v", err)
	}
}
