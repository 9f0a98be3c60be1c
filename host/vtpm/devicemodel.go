package vtpm

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// DeviceModelPIDPath is where libxl records an HVM domain's device model
// pid (tools/libs/light/libxl_dm.c: spawn->pidpath). The guest cannot
// write it: /local/domain/D is dom0's with read-only access for the guest
// (libxl__domain_make), and image/ is not among the subtrees it makes
// guest-writable.
func DeviceModelPIDPath(domid uint32) string {
	return fmt.Sprintf("/local/domain/%d/image/device-model-pid", domid)
}

// DeviceModel tells whether domid has a QEMU device model (an HVM
// domain) and whether that QEMU was started with "-incoming" (a restore:
// libxl__build_device_model_args_new adds "-incoming fd:N" when
// state->saved_state is set). read reads xenstore. The pid comes from
// the toolstack's node, not from scanning processes: any local process
// can put "-xen-domid 9 -incoming" in its argv. The argv is still checked
// for "-xen-domid D" (a recycled pid is someone else) and not
// "-xen-attach" (a PV guest's qdisk backend, libxl__spawn_qdisk_backend).
func DeviceModel(read func(path string) (string, error)) func(domid uint32) (hvm, incoming bool) {
	return func(domid uint32) (bool, bool) {
		v, err := read(DeviceModelPIDPath(domid))
		if err != nil {
			return false, false
		}
		pid, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || pid <= 1 {
			return false, false
		}
		return qemuArgs(pid, domid)
	}
}

// qemuArgs reads /proc/pid/cmdline.
func qemuArgs(pid int, domid uint32) (hvm, incoming bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false, false
	}
	return parseArgs(b, domid)
}

func parseArgs(cmdline []byte, domid uint32) (hvm, incoming bool) {
	want := []byte(strconv.FormatUint(uint64(domid), 10))
	args := bytes.Split(bytes.TrimRight(cmdline, "\x00"), []byte{0})
	match, attach := false, false
	for i, a := range args {
		switch string(a) {
		case "-xen-domid":
			if i+1 < len(args) && bytes.Equal(args[i+1], want) {
				match = true
			}
		case "-xen-attach":
			attach = true
		case "-incoming":
			incoming = true
		}
	}
	if !match || attach {
		return false, false
	}
	return true, incoming
}
