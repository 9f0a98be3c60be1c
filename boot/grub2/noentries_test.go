package grub2

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestNoEntriesSaysWhy(t *testing.T) {
	for _, k := range []string{"/boot/vm\x00linuz", "/boot/vm\xfflinuz"} {
		fs := fstest.MapFS{"grub.cfg": {Data: []byte("menuentry 'x' {\n linux '" + k + "' ro\n}\n")}}
		_, err := Parse(fs, "grub.cfg")
		if err == nil || !strings.Contains(err.Error(), "no bootable menu entries") || !strings.Contains(err.Error(), "linux") || !(strings.Contains(err.Error(), "NUL") || strings.Contains(err.Error(), "not valid")) {
			t.Errorf("%q: %v", k, err)
		}
	}
}
