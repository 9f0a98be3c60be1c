package loader

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/loaderimg"
	"github.com/vtpmboot/vtpmboot/internal/testenv"
)

// TestCorpusDocumented runs without QEMU: the corpus is big enough, every
// case parses, names its source and is listed in its directory's README.
func TestCorpusDocumented(t *testing.T) {
	root := testenv.RepoRoot()
	total := 0
	for _, l := range loaders {
		cases, err := loaderimg.LoadCorpus(root, l)
		if err != nil {
			t.Fatal(err)
		}
		readme, err := os.ReadFile(filepath.Join(root, "testdata", "loader", string(l), "README"))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			if !strings.Contains(string(readme), "\n- "+c.Name+": "+c.Source+"\n") {
				t.Errorf("%s/README does not list %s with its source (run testdata/loader/gen/readme.sh)", l, c.Name)
			}
			if p, b := c.MainConfig(); b == nil {
				t.Errorf("%s/%s: no config where %s looks for one (%v)", l, c.Name, l, c.ConfigPaths())
			} else if p == "" {
				t.Errorf("%s/%s: no main config", l, c.Name)
			}
		}
		if len(cases) < 10 {
			t.Errorf("%s: only %d cases", l, len(cases))
		}
		total += len(cases)
	}
	if total < 40 {
		t.Errorf("corpus has %d configs, want at least 40", total)
	}
}
