package grubemu

import (
	"context"
	"fmt"
	"path"
	"strings"
	"testing/fstest"

	"github.com/vtpmboot/vtpmboot/boot/entry"
	"github.com/vtpmboot/vtpmboot/boot/grub2"
)

// Verdict is one script's comparison of boot/grub2 with GRUB.
type Verdict struct {
	// Refused is boot/grub2's error, when it refuses the config; GRUB's
	// unattended boot is then in Boot.
	Refused error
	Menu    *entry.Menu
	Boots   []Boot
	// Differences lists every disagreement, one line each.
	Differences []string
}

// Diff runs each script through boot/grub2 and through GRUB 2.06 (batch
// scripts to a grub-emu process: every disk of a process is scanned by
// each "search", so scripts that search want small batches) and compares, for the unattended boot and for
// every entry boot/grub2 found, the entry GRUB runs, the kernel, the
// command line and the initrds.
func Diff(ctx context.Context, scripts []Script, batch int) ([]Verdict, error) {
	var out []Verdict
	for len(scripts) > 0 {
		n := min(batch, len(scripts))
		vs, err := diff(ctx, scripts[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, vs...)
		scripts = scripts[n:]
	}
	return out, nil
}

func diff(ctx context.Context, scripts []Script) ([]Verdict, error) {
	vs := make([]Verdict, len(scripts))
	run := make([]Script, len(scripts))
	for i, s := range scripts {
		fsys := fstest.MapFS{}
		for p, d := range s.Files {
			fsys[strings.TrimPrefix(p, "/")] = &fstest.MapFile{Data: d, Mode: 0o644}
		}
		m, err := grub2.ParseWith(fsys, s.Config, grub2.Options{Root: Root(i)})
		vs[i].Menu, vs[i].Refused = m, err
		s.Probes = []string{""}
		if err == nil {
			for _, e := range m.Entries {
				s.Probes = append(s.Probes, e.MenuPath)
			}
		}
		run[i] = s
	}
	res, err := Run(ctx, run)
	if err != nil {
		return nil, err
	}
	for i := range vs {
		v := &vs[i]
		v.Boots = res[i]
		if v.Refused != nil {
			continue
		}
		m := v.Menu
		def := res[i][0]
		if m.Waits == "" && m.Unbootable == "" {
			v.Differences = append(v.Differences, compare("unattended boot", m.Entries[m.Default], def)...)
		}
		for k, e := range m.Entries {
			if res[i][k+1].Attempts > 1 {
				// A configfile's menu booted before the probe's own
				// default could: GRUB never shows this menu unattended.
				continue
			}
			v.Differences = append(v.Differences, compare("entry "+e.MenuPath, e, res[i][k+1])...)
		}
	}
	return vs, nil
}

// compare checks GRUB's boot b against boot/grub2's entry e.
func compare(what string, e entry.Entry, b Boot) []string {
	if b.Auth {
		return []string{fmt.Sprintf("%s: vtpmboot boots %q, GRUB asks for a user name (a locked entry)", what, e.Title)}
	}
	if len(b.Linux) == 0 {
		return []string{fmt.Sprintf("%s: vtpmboot boots %q (%s %q), GRUB runs no linux command (errors %q)", what, e.Title, e.Kernel, e.Cmdline, b.Errors)}
	}
	var d []string
	// Each linux call replaces the last loaded kernel; an initrd call
	// replaces the initrds (grub_cmd_initrd frees the previous ones).
	l := b.Linux[len(b.Linux)-1]
	parts := splitChosen(l.Chosen)
	leaf := parts[len(parts)-1]
	if want := e.ID; want != leaf && e.Title != leaf {
		d = append(d, fmt.Sprintf("%s: vtpmboot boots %q (id %q), GRUB boots %q", what, e.Title, e.ID, l.Chosen))
	}
	if k := grubPath(l.Args[0]); k != e.Kernel {
		d = append(d, fmt.Sprintf("%s: kernel: vtpmboot %q, GRUB %q", what, e.Kernel, l.Args[0]))
	}
	if c := Cmdline(l.Args); c != e.Cmdline && !strings.Contains(e.Cmdline, "\t") {
		// GRUB's terminal prints a tab as spaces, so an argument with a
		// tab cannot be read back through echo; e2e/loader covers it.
		d = append(d, fmt.Sprintf("%s: command line: vtpmboot %q, GRUB %q", what, e.Cmdline, c))
	}
	var initrds []string
	if len(b.Initrd) > 0 {
		for _, a := range b.Initrd[len(b.Initrd)-1].Args {
			initrds = append(initrds, grubPath(a))
		}
	}
	if strings.Join(initrds, "\x00") != strings.Join(e.Initrds, "\x00") {
		d = append(d, fmt.Sprintf("%s: initrds: vtpmboot %q, GRUB %q", what, e.Initrds, initrds))
	}
	return d
}

// grubPath is a GRUB file name as a path inside the partition: the device
// part dropped (every script here has one partition), cleaned, relative.
func grubPath(p string) string {
	if strings.HasPrefix(p, "(") {
		if i := strings.IndexByte(p, ')'); i >= 0 {
			p = p[i+1:]
		}
	}
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}
