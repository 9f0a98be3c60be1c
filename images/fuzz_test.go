package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzResolveModules feeds arbitrary modules.dep/softdep/alias text to the
// resolver: a corrupt modules directory must give an error, never a panic
// or endless recursion.
func FuzzResolveModules(f *testing.F) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		return string(b)
	}
	f.Add(read("modules.dep"), read("modules.softdep"), read("modules.alias"), "ext4")
	f.Add("a.ko: b.ko\nb.ko: a.ko\n", "", "", "a")
	f.Add("a.ko: ../x.ko\n", "softdep a pre: a\n", "alias a a\n", "a")
	f.Fuzz(func(t *testing.T, dep, softdep, alias, name string) {
		dir := t.TempDir()
		for n, s := range map[string]string{"modules.dep": dep, "modules.softdep": softdep, "modules.alias": alias} {
			if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ms, err := ResolveModules(dir, strings.Fields(name))
		if err == nil {
			// Without any .ko files only an empty or all-builtin set resolves.
			if len(ms.Modules) != 0 {
				t.Fatalf("resolved %d modules with no module files", len(ms.Modules))
			}
		}
	})
}
