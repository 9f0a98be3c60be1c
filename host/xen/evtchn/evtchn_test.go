//go:build linux

package evtchn

import (
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/xentest"
)

// The ioctl numbers are checked against Linux's UAPI header as Debian's
// libxen-dev ships it (xen/sys/evtchn.h), compiled by the C compiler:
// the device itself exists only in a Xen domain (e2e/xen uses it there).
func TestIoctlNumbers(t *testing.T) {
	got := xentest.CMacros(t, "xen/sys/evtchn.h", "IOCTL_EVTCHN_BIND_INTERDOMAIN", "IOCTL_EVTCHN_UNBIND", "IOCTL_EVTCHN_NOTIFY")
	for name, want := range map[string]uint64{
		"IOCTL_EVTCHN_BIND_INTERDOMAIN": ioctlBindInterdomain,
		"IOCTL_EVTCHN_UNBIND":           ioctlUnbind,
		"IOCTL_EVTCHN_NOTIFY":           ioctlNotify,
	} {
		if got[name] != want {
			t.Errorf("%s = %#x in the header, %#x here", name, got[name], want)
		}
	}
}
