package xentest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// TestBootDom0 boots Xen and dom0 and runs a plan that asks xl what it
// sees: hvm with hap, which the HVM guests of e2e/xen need.
func TestBootDom0(t *testing.T) {
	if testing.Short() {
		t.Skip("boots Xen under QEMU")
	}
	testenv.NeedCommands(t, "qemu-system-x86_64", "xl", "oxenstored")
	root := testenv.RepoRoot()
	testenv.NeedFile(t, filepath.Join(XenDir(root), "xen"), "run scripts/deps.sh")
	unlock, err := Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	dir := t.TempDir()
	p, err := BuildDom0(context.Background(), root, dir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	plan := "xl info > $XENTEST_OUT/xlinfo.txt 2>&1\nls /dev/xen > $XENTEST_OUT/devxen.txt\n"
	if err := os.WriteFile(filepath.Join(out, "plan.sh"), []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Boot(context.Background(), p, Options{Out: out, Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(res))
	}
	t.Logf("Xen + dom0 + plan: %v", res.Duration.Round(time.Second))
	info, _ := os.ReadFile(filepath.Join(out, "xlinfo.txt"))
	if !strings.Contains(string(info), "virt_caps") || !strings.Contains(string(info), "hvm") || !strings.Contains(string(info), "hap") {
		t.Errorf("xl info lacks hvm hap:\n%s\n%s", info, tail(res))
	}
	devs, _ := os.ReadFile(filepath.Join(out, "devxen.txt"))
	for _, d := range []string{"evtchn", "gntdev", "privcmd", "xenbus"} {
		if !strings.Contains(string(devs), d) {
			t.Errorf("dom0 has no /dev/xen/%s: %q", d, devs)
		}
	}
}

func tail(res *Result) string {
	if res == nil {
		return ""
	}
	c := res.Console
	if len(c) > 6000 {
		c = c[len(c)-6000:]
	}
	return c
}
