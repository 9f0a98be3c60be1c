// Package loader is the real-loader differential test: every corpus config
// in testdata/loader is installed with the real GRUB 2.06, SYSLINUX 6.04 or
// GRUB 0.97 on a disk image and booted under QEMU into an observer that
// reports the kernel file, command line and initrd bytes the loader handed
// over; `pcrsim predict --disk IMG --list --format json` on the same image
// must predict the same, or both must refuse. docs/e2e-loader.md explains
// the corpus, the verdicts and the accepted differences.
package loader

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/loaderimg"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

var loaders = []loaderimg.Loader{loaderimg.GRUB2, loaderimg.Syslinux, loaderimg.GRUBLegacy}

// outcome is what one side says boots, in the terms both can be compared in.
type outcome struct {
	Refused bool   // nothing boots unattended
	Why     string // the refusal or the loader's state
	Kernel  string
	Initrds []string
	Cmdline string
	// Pads is the zero padding after each initrd (loader side: measured;
	// pcrsim side: the measurement contract's rule).
	Pads []int
}

func (o outcome) String() string {
	if o.Refused {
		return "refuses (" + o.Why + ")"
	}
	return fmt.Sprintf("kernel %s initrds %q pads %v cmdline %q", o.Kernel, o.Initrds, o.Pads, o.Cmdline)
}

func TestRealLoaders(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU; skipped with -short")
	}
	root := testenv.RepoRoot()
	for _, l := range loaders {
		testenv.NeedCommands(t, loaderimg.Commands(l)...)
	}
	for _, f := range []string{loaderimg.GRUB2Dir + "/boot.img", loaderimg.GRUBLegacyDir + "/stage2", loaderimg.SyslinuxMBR, loaderimg.SyslinuxMods + "/menu.c32"} {
		testenv.NeedFile(t, f, "run scripts/deps.sh")
	}
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	observer, err := loaderimg.BuildObserver(ctx, work)
	if err != nil {
		t.Fatal(err)
	}
	pcrsim := filepath.Join(work, "pcrsim")
	if out, err := goBuild(ctx, root, pcrsim); err != nil {
		t.Fatalf("go build pcrsim: %v: %s", err, out)
	}
	accepted, err := readAccepted(filepath.Join(root, "testdata", "loader", "accepted-differences.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []*loaderimg.Case
	for _, l := range loaders {
		cs, err := loaderimg.LoadCorpus(root, l)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, cs...)
	}
	if only := os.Getenv("VTPMBOOT_LOADER_CASE"); only != "" {
		var keep []*loaderimg.Case
		for _, c := range cases {
			if strings.Contains(string(c.Loader)+"/"+c.Name, only) {
				keep = append(keep, c)
			}
		}
		cases = keep
	}
	if len(cases) == 0 {
		t.Fatal("no corpus cases found")
	}
	for key := range accepted {
		found := false
		for _, c := range cases {
			found = found || key == string(c.Loader)+"/"+c.Name
		}
		if !found && os.Getenv("VTPMBOOT_LOADER_CASE") == "" {
			t.Errorf("accepted-differences.txt names %s, which is not in the corpus", key)
		}
	}

	start := time.Now()

	var mu sync.Mutex
	agree := map[loaderimg.Loader]int{}
	total := map[loaderimg.Loader]int{}
	var lines []string
	t.Run("corpus", func(t *testing.T) {
		for _, c := range cases {
			t.Run(string(c.Loader)+"/"+c.Name, func(t *testing.T) {
				t.Parallel() // two at a time by default (-parallel = GOMAXPROCS)
				dir := t.TempDir()
				img, err := loaderimg.BuildDisk(ctx, c, loaderimg.ObserverPayload(observer), dir)
				if err != nil {
					t.Fatal(err)
				}
				got, boot, err := realLoader(ctx, c, img)
				if err != nil {
					t.Fatal(err)
				}
				want, list, err := predicted(ctx, pcrsim, img)
				if err != nil {
					t.Fatal(err)
				}
				key := string(c.Loader) + "/" + c.Name
				same := sameOutcome(got, want)
				reason, isAccepted := accepted[key]
				mu.Lock()
				total[c.Loader]++
				verdict := "agree"
				if same {
					agree[c.Loader]++
				} else if isAccepted {
					verdict = "accepted difference"
				} else {
					verdict = "DIFFER"
				}
				line := fmt.Sprintf("%-46s %-20s %5.1fs loader: %s", key, verdict, boot.Duration.Seconds(), got)
				if got.Refused || want.Refused {
					line += "\n" + strings.Repeat(" ", 75) + "pcrsim: " + want.String()
				}
				lines = append(lines, line)
				mu.Unlock()
				switch {
				case same && isAccepted:
					t.Errorf("%s agrees now: remove it from accepted-differences.txt (%s)", key, reason)
				case !same && isAccepted:
					t.Logf("accepted difference (%s):\n  loader: %s\n  pcrsim: %s", reason, got, want)
				case !same:
					t.Errorf("real %s and pcrsim differ on %s (source: %s)\n  loader: %s\n  pcrsim: %s\n  pcrsim --list: %s\n  console tail: %q",
						c.Loader, key, c.Source, got, want, list, tail(boot.Console, 600))
				}
			})
		}
	})
	sort.Strings(lines)
	t.Logf("real-loader corpus, %s wall:\n%s", time.Since(start).Round(time.Second), strings.Join(lines, "\n"))
	for _, l := range loaders {
		t.Logf("%s: %d of %d configs agree", l, agree[l], total[l])
	}
}

// realLoader boots img and turns the observer's report into an outcome.
func realLoader(ctx context.Context, c *loaderimg.Case, img string) (outcome, *loaderimg.BootResult, error) {
	r, err := loaderimg.Boot(ctx, img, c.Deadline)
	if err != nil {
		return outcome{}, nil, err
	}
	if r.Waited {
		why := fmt.Sprintf("still in the loader after %s", c.Deadline)
		if r.Screen != "" {
			why += "; screen: " + strings.Join(strings.Fields(strings.ReplaceAll(r.Screen, "\n", " | ")), " ")
		}
		return outcome{Refused: true, Why: why}, r, nil
	}
	if r.Err != nil {
		return outcome{Refused: true, Why: r.Err.Error()}, r, nil
	}
	o := r.Observed
	out := outcome{Kernel: o.Marker, Cmdline: string(o.Cmdline)}
	if !o.HasCmdline {
		out.Cmdline = ""
	}
	files, pads, err := splitInitrds(o.Initrd, c.Initrds)
	if err != nil {
		return outcome{}, r, fmt.Errorf("initrd area at %#x (%d bytes): %w", o.InitrdAddr, o.InitrdSize, err)
	}
	out.Initrds, out.Pads = files, pads
	return out, r, nil
}

// splitInitrds names the files in the loader's initrd area from their
// contents (loaderimg.InitrdContent), with the zero bytes after each.
func splitInitrds(area []byte, names []string) ([]string, []int, error) {
	files, pads := []string{}, []int{}
	for pos := 0; pos < len(area); {
		hit := ""
		for _, n := range names {
			if bytes.HasPrefix(area[pos:], loaderimg.InitrdContent(n)) {
				hit = n
			}
		}
		if hit == "" {
			return nil, nil, fmt.Errorf("unknown bytes at offset %d: %q", pos, tail(area[pos:], 64))
		}
		files = append(files, hit)
		pos += len(loaderimg.InitrdContent(hit))
		pad := 0
		for pos < len(area) && area[pos] == 0 {
			pad++
			pos++
		}
		pads = append(pads, pad)
	}
	return files, pads, nil
}

// listDoc is the part of `pcrsim predict --list --format json` compared.
type listDoc struct {
	Boots *struct {
		Kernel  string   `json:"kernel"`
		Initrds []string `json:"initrds"`
		Cmdline string   `json:"cmdline"`
	} `json:"boots"`
	Error string `json:"error"`
}

// predicted runs pcrsim on the image; the initrd padding is the
// measurement contract's: each file but the last zero-padded to 4 bytes.
func predicted(ctx context.Context, pcrsim, img string) (outcome, string, error) {
	cmd := exec.CommandContext(ctx, pcrsim, "predict", "--disk", img, "--list", "--format", "json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var d listDoc
	if err := json.Unmarshal(stdout.Bytes(), &d); err != nil {
		return outcome{}, "", fmt.Errorf("pcrsim --list: %v (run: %v, stderr %s)", err, runErr, stderr.String())
	}
	list := strings.TrimSpace(stdout.String())
	if d.Boots == nil {
		if runErr == nil {
			return outcome{}, list, fmt.Errorf("pcrsim --list exited 0 with nothing to boot")
		}
		return outcome{Refused: true, Why: d.Error}, list, nil
	}
	o := outcome{Kernel: "/" + d.Boots.Kernel, Cmdline: d.Boots.Cmdline, Initrds: []string{}, Pads: []int{}}
	for i, p := range d.Boots.Initrds {
		o.Initrds = append(o.Initrds, "/"+p)
		pad := 0
		if i < len(d.Boots.Initrds)-1 {
			pad = (4 - len(loaderimg.InitrdContent("/"+p))%4) % 4
		}
		o.Pads = append(o.Pads, pad)
	}
	return o, list, nil
}

func sameOutcome(a, b outcome) bool {
	if a.Refused || b.Refused {
		return a.Refused == b.Refused
	}
	return a.Kernel == b.Kernel && a.Cmdline == b.Cmdline &&
		fmt.Sprint(a.Initrds) == fmt.Sprint(b.Initrds) && fmt.Sprint(a.Pads) == fmt.Sprint(b.Pads)
}

// readAccepted reads "loader/case: reason" lines.
func readAccepted(p string) (map[string]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		k, v, ok := strings.Cut(l, ": ")
		if !ok || strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("%s:%d: want \"loader/case: reason\"", p, n)
		}
		m[k] = v
	}
	return m, sc.Err()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func goBuild(ctx context.Context, root, out string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/pcrsim")
	cmd.Dir = root
	return cmd.CombinedOutput()
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}
