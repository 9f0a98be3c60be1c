//go:build linux

package gnttab

import (
	"testing"
	"unsafe"

	"github.com/vtpmboot/vtpmboot/internal/xentest"
)

// As in evtchn: the numbers and struct sizes against Debian's
// xen/sys/gntdev.h, compiled by the C compiler.
func TestIoctlNumbers(t *testing.T) {
	got := xentest.CMacros(t, "xen/sys/gntdev.h", "IOCTL_GNTDEV_MAP_GRANT_REF", "IOCTL_GNTDEV_UNMAP_GRANT_REF",
		"sizeof(struct ioctl_gntdev_map_grant_ref)", "sizeof(struct ioctl_gntdev_unmap_grant_ref)")
	for name, want := range map[string]uint64{
		"IOCTL_GNTDEV_MAP_GRANT_REF":                  ioctlMapGrantRef,
		"IOCTL_GNTDEV_UNMAP_GRANT_REF":                ioctlUnmapGrantRef,
		"sizeof(struct ioctl_gntdev_map_grant_ref)":   uint64(unsafe.Sizeof(mapGrantRef{})),
		"sizeof(struct ioctl_gntdev_unmap_grant_ref)": uint64(unsafe.Sizeof(unmapGrantRef{})),
	} {
		if got[name] != want {
			t.Errorf("%s = %#x in the header, %#x here", name, got[name], want)
		}
	}
}
