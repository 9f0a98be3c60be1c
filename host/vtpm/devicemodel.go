package vtpm

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// ProcDeviceModel looks for domid's QEMU device model among dom0's
// processes: its argv holds "-xen-domid" "<domid>" (libxl_dm.c,
// libxl__build_device_model_args_new). A QEMU with "-xen-attach" is a
// PV guest's qdisk backend (libxl__spawn_qdisk_backend), not a device
// model. incoming: its argv holds "-incoming" (a restore or soft reset;
// the argv outlives the unlinked state file).
func ProcDeviceModel(domid uint32) (hvm, incoming bool) {
	want := []byte(strconv.FormatUint(uint64(domid), 10))
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("-xen-domid\x00")) {
			continue
		}
		args := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
		match, attach, inc := false, false, false
		for i, a := range args {
			switch string(a) {
			case "-xen-domid":
				match = i+1 < len(args) && bytes.Equal(args[i+1], want)
			case "-xen-attach":
				attach = true
			case "-incoming":
				inc = true
			}
		}
		if match && !attach {
			return true, inc
		}
	}
	return false, false
}
