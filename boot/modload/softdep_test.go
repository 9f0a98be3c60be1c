package modload

import (
	"slices"
	"strings"
	"testing"
)

// The softdep syntax as modprobe.d(5) documents it: "softdep MODULE pre:
// ... post: ...", either part optional, in either order.
func TestSoftPre(t *testing.T) {
	for in, want := range map[string][]string{
		"pre: a b post: c":        {"a", "b"},
		"post: c pre: a":          {"a"},
		"post: c":                 nil,
		"pre: a post: b pre: c d": {"a", "c", "d"},
		"a pre:":                  nil,
		"":                        nil,
	} {
		if got := SoftPre(strings.Fields(in)); !slices.Equal(got, want) {
			t.Errorf("SoftPre(%q) = %q, want %q", in, got, want)
		}
	}
}
