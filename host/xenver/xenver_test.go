package xenver

import (
	"context"
	"os/exec"
	"strings"
	"testing"
)

// The affected releases are those the issue tracker and Xen's release
// notes name (4.16.0-4.16.3, 4.17.0); the cases on either side of each
// edge are what a wrong comparison would get wrong.
func TestSoftResetVerdict(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Verdict
	}{
		{"4.15.5", Good},
		{"4.16.0", Broken},
		{"4.16.3", Broken},
		{"4.16.4", Good},
		{"4.17", Broken}, // "4.17" is how 4.17.0 is sometimes spelled
		{"4.17.0", Broken},
		{"4.17.0-1", Broken},
		{"4.17.0+24-g2f8851c37f-2", MaybeBroken},
		{"4.17.1", Good},
		{"4.17.7+13-g2445b30a44-0+deb12u1", Good}, // Debian 12's
		{"4.17.3-0ubuntu1", Good},                 // Ubuntu 24.04's
		{"1:4.16.2-0ubuntu2", MaybeBroken},
		{"4.20.0", Good},
		{"5.0.0", Good},
	} {
		v, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		got, why := SoftResetVerdict(v)
		if got != c.want {
			t.Errorf("%s: verdict %d, want %d (%s)", c.in, got, c.want, why)
		}
		if (got == Good) != (why == "") {
			t.Errorf("%s: verdict %d with reason %q", c.in, got, why)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, s := range []string{"", "xen", "4", "v4.17.0"} {
		if v, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", s, v)
		}
	}
}

func TestFromDpkg(t *testing.T) {
	out := "libxen-4.11 deinstall ok config-files 4.11.4+107-gef32c7afa2-1\nlibxenmisc4.17 install ok installed 4.17.0+24-g2f8851c37f-2\n"
	v, pkg, ok := fromDpkg([]byte(out))
	if !ok || pkg != "libxenmisc4.17" || v.Major != 4 || v.Minor != 17 || v.Patch != 0 || !v.Patched {
		t.Errorf("fromDpkg = %+v %q %v", v, pkg, ok)
	}
	if _, _, ok := fromDpkg([]byte("libxenmisc4.17 deinstall ok config-files 4.17.0\n")); ok {
		t.Error("a removed package's version was taken")
	}
}

func TestFromXlInfo(t *testing.T) {
	v, ok := fromXlInfo([]byte("host                   : dom0\nxen_major              : 4\nxen_version            : 4.17.7-pre\n"))
	if !ok || v.Minor != 17 || v.Patch != 7 {
		t.Errorf("fromXlInfo = %+v %v", v, ok)
	}
}

// On this machine (scripts/deps.sh installs Debian 12's Xen userspace)
// the answer must agree with what dpkg-query itself prints.
func TestToolstackHere(t *testing.T) {
	want, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "libxenmisc4.17").Output()
	if err != nil {
		t.Skipf("libxenmisc4.17 not installed here (%v): nothing independent to compare with", err)
	}
	v, src, err := Toolstack(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v.Raw != strings.TrimSpace(string(want)) || !strings.Contains(src, "libxenmisc4.17") {
		t.Errorf("Toolstack = %q from %s, dpkg-query says %q", v.Raw, src, want)
	}
}
