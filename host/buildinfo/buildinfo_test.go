package buildinfo

import (
	"strings"
	"testing"
)

// What the Makefile sets is what every command prints; without it the
// line still names the command and the contract.
func TestLine(t *testing.T) {
	defer func(v string) { Version = v }(Version)
	Version = "0.1.0~git1"
	if got := Line("pcrsim"); got != "pcrsim 0.1.0~git1, measurement contract 1" {
		t.Errorf("Line = %q", got)
	}
	Version = ""
	if got := Line("mkstub"); !strings.HasPrefix(got, "mkstub ") || !strings.HasSuffix(got, ", measurement contract 1") {
		t.Errorf("Line without a build version = %q", got)
	}
}
