package loader

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPickerTimeout: a picker that never answers (a disk whose parsing
// hangs) is killed after PickTimeout, its whole process group with it,
// and the loader says so; nothing is left in the output directory. The
// picker here is a real process, a shell script standing in for the
// loader's binary, since a disk that hangs the reader for a chosen time
// is what the work budget (boot/diskimage) exists to prevent.
func TestPickerTimeout(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "hang")
	// The child sleeps in the background too: the process group kill
	// must end it, or Wait would block on the inherited pipe.
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n/bin/sleep 600 &\nexec /bin/sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	disk, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	old := PickTimeout
	PickTimeout = time.Second
	defer func() { PickTimeout = old }()
	out := t.TempDir()
	start := time.Now()
	_, err = runPicker(exe, disk, -1, pickRequest{Path: exe}, func(r io.Reader) (*picked, error) { return receive(r, out, nil) })
	if !errors.Is(err, errPickerTimedOut) || !strings.Contains(err.Error(), "stopped after 1s") {
		t.Fatalf("err %v, want the timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v to give up after a 1 s limit", d)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("%d files left", len(ents))
	}
}

// TestPickerCrash: a picker that dies without answering is one error
// naming what it said first.
func TestPickerCrash(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "crash")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\necho 'fatal error: runtime: out of memory' >&2\necho more >&2\nexit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	disk, _ := os.Open(exe)
	defer disk.Close()
	_, err := runPicker(exe, disk, -1, pickRequest{Path: exe}, func(r io.Reader) (*picked, error) { return receive(r, t.TempDir(), nil) })
	if err == nil || !strings.Contains(err.Error(), "fatal error: runtime: out of memory") || strings.Contains(err.Error(), "more") {
		t.Fatalf("err %v", err)
	}
}
