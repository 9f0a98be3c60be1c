// Package golden compares a value with a checked-in golden file: the one
// golden mechanism of the tests (boot-config parsers, xl configs, recorded
// TPM sessions). `go test ./PKG/... -args -update` rewrites the files from
// the code's output; a rewritten golden is only as good as
// the person who then reads every one of them against what the real boot
// loader does, which is why each parser also pins its key command lines
// by hand in a separate test.
package golden

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"
	"unicode/utf8"
)

// Update rewrites golden files instead of comparing against them.
var Update = flag.Bool("update", false, "rewrite the golden files from the code's output (then read every one of them)")

// JSON compares v, marshalled as indented JSON with a final newline, with
// the file at path.
func JSON(t testing.TB, path string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	Bytes(t, path, append(got, '\n'))
}

// Bytes compares got with the file at path, or rewrites the file with -update.
func Bytes(t testing.TB, path string, got []byte) {
	t.Helper()
	if *Update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -args -update to create it, then review it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	if utf8.Valid(got) && utf8.Valid(want) {
		t.Errorf("%s differs from the code's output:\n--- got\n%s--- want\n%s", path, got, want)
	} else {
		t.Errorf("%s differs from the code's output:\n got %x\nwant %x", path, got, want)
	}
}
