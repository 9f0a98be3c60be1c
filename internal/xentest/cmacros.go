package xentest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// CMacros compiles and runs a C program that prints each expression
// (a macro, a sizeof) as the C compiler evaluates it with header
// included: the independent source for the ioctl numbers and layouts of
// host/xen/evtchn and host/xen/gnttab (libxen-dev's headers, scripts/deps.sh).
func CMacros(t testing.TB, header string, exprs ...string) map[string]uint64 {
	t.Helper()
	testenv.NeedCommands(t, "cc")
	testenv.NeedFile(t, filepath.Join("/usr/include", header), "install libxen-dev (scripts/deps.sh)")
	var src strings.Builder
	fmt.Fprintf(&src, "#include <stdint.h>\n#include <stdio.h>\n#include <sys/ioctl.h>\ntypedef uint16_t domid_t; /* xen.h, which the UAPI headers assume */\n#include <%s>\nint main(void) {\n", header)
	for _, e := range exprs {
		fmt.Fprintf(&src, "\tprintf(\"%%llu\\n\", (unsigned long long)(%s));\n", e)
	}
	src.WriteString("\treturn 0;\n}\n")
	dir := t.TempDir()
	c, bin := filepath.Join(dir, "m.c"), filepath.Join(dir, "m")
	if err := os.WriteFile(c, []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cc", "-o", bin, c).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s\n%s", err, out, src.String())
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != len(exprs) {
		t.Fatalf("%d values for %d expressions: %q", len(lines), len(exprs), out)
	}
	m := map[string]uint64{}
	for i, e := range exprs {
		v, err := strconv.ParseUint(lines[i], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		m[e] = v
	}
	return m
}
