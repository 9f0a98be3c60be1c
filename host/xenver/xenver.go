// Package xenver tells which Xen toolstack dom0 runs and whether that
// toolstack is one that cannot kexec an HVM guest.
//
// The stub's kexec is a soft reset (SHUTDOWN_soft_reset), which xl
// carries out with libxl_domain_soft_reset. libxl commit 34990446ca
// ("libxl: ... soft reset") broke that path in Xen 4.16.0 and 4.17.0; it
// was fixed by 1e454c2b5b (4.18) and its backports, released in 4.16.4
// and 4.17.1. The fault is in libxl, not the hypervisor, so the version
// that matters is the toolstack's, and distributions backport fixes
// without changing the upstream version: a Debian version such as
// 4.17.0+24-g2f8851c37f-2 is 4.17.0 plus 24 commits of the stable branch,
// which may or may not hold the fix. Such versions get a "may be" warning.
package xenver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Version is an upstream Xen version, with what a distribution added.
type Version struct {
	Major, Minor, Patch int
	// Raw is the version as its source spelled it.
	Raw string
	// Patched says the distribution's version carries commits after
	// the upstream release (Debian's "+N-gHASH"), so a backport may be
	// in it.
	Patched bool
}

func (v Version) String() string { return v.Raw }

var versionRE = regexp.MustCompile(`^(?:\d+:)?(\d+)\.(\d+)(?:\.(\d+))?(.*)$`)

// Parse reads an upstream or distribution version string: 4.17.1,
// 4.17.7+13-g2445b30a44-0+deb12u1, 1:4.17.0-1ubuntu2.
func Parse(s string) (Version, error) {
	s = strings.TrimSpace(s)
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("xen version %q: not MAJOR.MINOR[.PATCH]", s)
	}
	v := Version{Raw: s}
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Patch, _ = strconv.Atoi(m[3])
	}
	// Debian's git snapshots of a stable branch: "+N-gHASH" after the
	// release. A packaging revision alone ("-1", "-0+deb12u1") adds no
	// upstream commits, but may add patches: treated alike, since a
	// distribution patch can be the backport.
	v.Patched = strings.Contains(m[4], "-g") || strings.Contains(strings.ToLower(m[4]), "ubuntu")
	return v, nil
}

// Verdict says what a toolstack version means for the stub's kexec.
type Verdict int

const (
	// Good: not a version known to break soft reset.
	Good Verdict = iota
	// MaybeBroken: an affected release with distribution changes on
	// top; the fix may have been backported.
	MaybeBroken
	// Broken: an affected release as upstream made it.
	Broken
)

// SoftResetVerdict says whether HVM guests can kexec (soft reset) under
// this libxl, and why not.
func SoftResetVerdict(v Version) (Verdict, string) {
	affected := v.Major == 4 && (v.Minor == 16 && v.Patch <= 3 || v.Minor == 17 && v.Patch == 0)
	if !affected {
		return Good, ""
	}
	why := fmt.Sprintf("libxl %s has regression 34990446ca: xl cannot soft-reset an HVM guest, so the stub's kexec loses the guest (fixed by 1e454c2b5b in 4.16.4 and 4.17.1); HVM guests booting the stub will not come back, PV/PVH guests using the dom0 loader are not affected", v.Raw)
	if v.Patched {
		return MaybeBroken, why + "; this distribution version carries changes after the release: check its changelog for 1e454c2b5b"
	}
	return Broken, why
}

// Toolstack finds the installed libxl's version: the Debian/Ubuntu
// package that ships libxenlight (libxenmisc4.x since Debian 12 and
// Ubuntu 22.04, libxen-4.x before), else the RPM xen-libs, else the
// hypervisor's version from `xl info` (a guess: the toolstack usually
// matches). source says which.
func Toolstack(ctx context.Context) (v Version, source string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f", "${Package} ${Status} ${Version}\n", "libxenmisc4.*", "libxen-4.*").Output(); err == nil || len(out) > 0 {
		if v, pkg, ok := fromDpkg(out); ok {
			return v, "dpkg package " + pkg, nil
		}
	}
	if out, err := exec.CommandContext(ctx, "rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}\n", "xen-libs").Output(); err == nil {
		if v, err := Parse(firstLine(out)); err == nil {
			return v, "rpm package xen-libs", nil
		}
	}
	out, err := exec.CommandContext(ctx, "xl", "info").Output()
	if err != nil {
		return Version{}, "", fmt.Errorf("no libxl package found and xl info failed: %w", err)
	}
	if v, ok := fromXlInfo(out); ok {
		return v, "xl info xen_version (the hypervisor's; the toolstack's could differ)", nil
	}
	return Version{}, "", fmt.Errorf("no libxl package found and xl info names no xen_version")
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return string(line)
}

// fromDpkg takes the first installed package of dpkg-query's lines
// "PKG install ok installed VERSION".
func fromDpkg(out []byte) (Version, string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 5 || f[3] != "installed" {
			continue
		}
		if v, err := Parse(f[4]); err == nil {
			return v, f[0], true
		}
	}
	return Version{}, "", false
}

func fromXlInfo(out []byte) (Version, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, val, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "xen_version" {
			v, err := Parse(val)
			return v, err == nil
		}
	}
	return Version{}, false
}
