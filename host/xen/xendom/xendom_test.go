package xendom

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
	"github.com/vtpmboot/vtpmboot/internal/xentest"
)

// The numbers above against libxen-dev's headers, as the C compiler
// sees them (the independent source; Xen itself is not running here).
func TestConstantsMatchHeaders(t *testing.T) {
	// xentest.CMacros includes one header; privcmd.h needs xen.h's
	// xen_pfn_t first, so this test compiles its own program.
	got := privcmdMacros(t, "IOCTL_PRIVCMD_HYPERCALL", "sizeof(privcmd_hypercall_t)")
	if got["IOCTL_PRIVCMD_HYPERCALL"] != ioctlPrivcmdHypercall {
		t.Errorf("IOCTL_PRIVCMD_HYPERCALL = %#x, we use %#x", got["IOCTL_PRIVCMD_HYPERCALL"], ioctlPrivcmdHypercall)
	}
	if got["sizeof(privcmd_hypercall_t)"] != privcmdHypercallSize || unsafe.Sizeof([6]uint64{}) != privcmdHypercallSize {
		t.Errorf("sizeof(privcmd_hypercall_t) = %d, we pass %d", got["sizeof(privcmd_hypercall_t)"], unsafe.Sizeof([6]uint64{}))
	}
	x := xentest.CMacros(t, "xen/memory.h", "__HYPERVISOR_memory_op", "XENMEM_current_reservation", "DOMID_FIRST_RESERVED", "sizeof(struct xen_memory_domain)")
	for name, want := range map[string]uint64{"__HYPERVISOR_memory_op": hypervisorMemoryOp, "XENMEM_current_reservation": xenmemCurrentReservation, "DOMID_FIRST_RESERVED": uint64(domidFirstReserved), "sizeof(struct xen_memory_domain)": 2} {
		if x[name] != want {
			t.Errorf("%s = %d, we use %d", name, x[name], want)
		}
	}
}

// Without Xen there is no privcmd: one clear error, no panic. (The
// hypercall itself runs only in dom0; e2e/xen runs vtpmback there.)
func TestOpenWithoutXen(t *testing.T) {
	if _, err := os.Stat(defaultPrivcmd); err == nil {
		t.Skip("this machine has privcmd")
	}
	_, err := Open()
	if err == nil || !strings.Contains(err.Error(), defaultPrivcmd) {
		t.Fatalf("got %v, want an error naming %s", err, defaultPrivcmd)
	}
}

func privcmdMacros(t *testing.T, exprs ...string) map[string]uint64 {
	t.Helper()
	testenv.NeedCommands(t, "cc")
	testenv.NeedFile(t, "/usr/include/xen/sys/privcmd.h", "install libxen-dev (scripts/deps.sh)")
	src := "#include <stdint.h>\n#include <stdio.h>\n#include <sys/ioctl.h>\n#include <xen/xen.h>\n#include <xen/sys/privcmd.h>\nint main(void) {\n"
	for _, e := range exprs {
		src += "\tprintf(\"%llu\\n\", (unsigned long long)(" + e + "));\n"
	}
	src += "\treturn 0;\n}\n"
	dir := t.TempDir()
	c, bin := filepath.Join(dir, "m.c"), filepath.Join(dir, "m")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cc", "-o", bin, c).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s\n%s", err, out, src)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(out))
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
