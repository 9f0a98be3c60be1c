package grubemu

import (
	"context"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

func need(t *testing.T) {
	t.Helper()
	testenv.NeedCommands(t, "grub-emu")
	testenv.NeedFile(t, ModDir+"/normal.mod", "apt-get install grub-emu (scripts/deps.sh)")
}

func run(t *testing.T, s ...Script) [][]Boot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Run(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestProbeSmoke(t *testing.T) {
	need(t)
	cfg := `set default=1
set timeout=5
menuentry 'A' --id a { linux /vmlinuz-a root=x "q q" ; initrd /i1 /i2 }
menuentry 'B' { linux /vmlinuz-b $opt "" ; }
submenu 'S' { menuentry 'S1' { linux /s1 }  }
`
	r := run(t, Script{Files: map[string][]byte{"boot/grub/grub.cfg": []byte(cfg)}, Config: "boot/grub/grub.cfg", Probes: []string{"", "0", "2>0"}})
	for _, b := range r[0] {
		t.Logf("%q %v linux=%q initrd=%q errors=%q", b.Probe, b.Vars, b.Linux, b.Initrd, b.Errors)
	}
}
