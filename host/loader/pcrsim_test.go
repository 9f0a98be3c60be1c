package loader_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/contract"
	"github.com/vtpmboot/vtpmboot/internal/swtpmtest"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// TestPcrsimPredictsLoaderGuests: pcrsim predict --xl-config on PV and
// PVH guests whose bootloader= is the loader gives the PCRs the loader
// put into the swtpm from the same config's arguments (extra= appended,
// vtpmboot.entry= from bootloader_args), with no --pcr-init; policy takes
// the same configs.
func TestPcrsimPredictsLoaderGuests(t *testing.T) {
	g := guests()[0]
	img := buildDisk(t, g.disk)
	for _, typ := range []string{"pv", "pvh"} {
		t.Run(typ, func(t *testing.T) {
			in := swtpmtest.Start(t, pcrbank.Version20)
			sd := socketDir(t, in, uuid)
			bl := []string{"vtpmboot.entry=Rescue", "--vtpm-uuid=" + uuid, "--vtpm-socket-dir=" + sd, "--state-dir="}
			extra := "console=hvc0"
			cfg := filepath.Join(t.TempDir(), "guest.cfg")
			var q []string
			for _, a := range bl {
				q = append(q, fmt.Sprintf("%q", a))
			}
			text := fmt.Sprintf("name = \"g-%s\"\ntype = %q\nmemory = 512\nbootloader = \"/usr/lib/vtpmboot/vtpmboot-loader\"\nbootloader_args = [ %s ]\nroot = \"/dev/xvda1\"\nextra = %q\ndisk = [ \"format=raw, vdev=xvda, access=rw, target=%s\" ]\nvtpm = [ \"backend=0,uuid=%s\" ]\n",
				typ, typ, strings.Join(q, ", "), extra, img, uuid)
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			// What libxl passes: --args= is xl's parse_cmdline result.
			x := newXL(t, 4)
			r := x.run(t, x.argv("root=/dev/xvda1 "+extra, 0, bl, img))
			if r.code != 0 {
				t.Fatalf("loader: exit %d: %s", r.code, r.stderr)
			}
			cmdline := "BOOT_IMAGE=/boot/vmlinuz root=/dev/xvda1 single root=/dev/xvda1 console=hvc0"
			got := checkPCRs(t, in, contract.Boot{Kernel: g.kernel, Cmdline: cmdline})

			var banks []string
			for b := range got {
				banks = append(banks, b)
			}
			out, err := exec.Command(tool(t, "pcrsim"), "predict", "--xl-config", cfg, "--bank", strings.Join(banks, ",")).Output()
			if err != nil {
				t.Fatalf("pcrsim predict: %v: %s", err, out)
			}
			var docs []struct {
				Error string                       `json:"error"`
				Banks map[string]map[string]string `json:"banks"`
			}
			if err := json.Unmarshal(out, &docs); err != nil || len(docs) != 1 {
				t.Fatalf("pcrsim json: %v: %s", err, out)
			}
			if docs[0].Error != "" {
				t.Fatalf("pcrsim: %s", docs[0].Error)
			}
			for b, pcrs := range got {
				for pcr, v := range pcrs {
					if p := strings.TrimPrefix(docs[0].Banks[b][pcr], "0x"); p != v {
						t.Errorf("pcrsim predicts PCR %s %s = %s, the swtpm has %s", pcr, b, p, v)
					}
				}
			}
			pol, err := exec.Command(tool(t, "pcrsim"), "policy", "--xl-config", cfg, "--bank", "sha256").CombinedOutput()
			if err != nil || !strings.Contains(string(pol), got["sha256"]["4"]) {
				t.Errorf("pcrsim policy: %v: %s; want PCR 4 %s in it", err, pol, got["sha256"]["4"])
			}
		})
	}
}
