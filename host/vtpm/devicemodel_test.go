package vtpm

import (
	"errors"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Real processes standing in for QEMU: sh keeps its extra arguments in
// its argv ("sh -c CMD ARG0 ARG1 ..."), which is what /proc shows.
func TestDeviceModel(t *testing.T) {
	spawn := func(args ...string) int {
		cmd := exec.Command("sh", append([]string{"-c", "sleep 30; :"}, args...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		time.Sleep(50 * time.Millisecond)
		return cmd.Process.Pid
	}
	restored := spawn("qemu", "-xen-domid", "9", "-incoming", "fd:12")
	booted := spawn("qemu", "-xen-domid", "10", "-nodefaults")
	qdisk := spawn("qemu", "-xen-domid", "11", "-xen-attach", "-incoming", "x")
	pids := map[uint32]int{9: restored, 10: booted, 11: qdisk, 12: restored, 13: 0}
	read := func(p string) (string, error) {
		for d, pid := range pids {
			if p == DeviceModelPIDPath(d) && pid != 0 {
				return strconv.Itoa(pid), nil
			}
		}
		return "", errors.New("ENOENT")
	}
	dm := DeviceModel(read)
	for _, tc := range []struct {
		domid         uint32
		hvm, incoming bool
		why           string
	}{
		{9, true, true, "restore"},
		{10, true, false, "boot"},
		{11, false, false, "a qdisk backend is no device model"},
		{12, false, false, "the node's pid runs another domain's QEMU"},
		{13, false, false, "no device model (PV/PVH)"},
	} {
		if h, i := dm(tc.domid); h != tc.hvm || i != tc.incoming {
			t.Errorf("domain %d (%s): hvm %v incoming %v", tc.domid, tc.why, h, i)
		}
	}
}
