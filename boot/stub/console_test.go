package stub

import (
	"testing"
	"time"
)

// The phase line's shape is what docs/stub.md promises the benchmark:
// "vtpmboot: phase NAME Nms".
func TestPhaseLine(t *testing.T) {
	if got, want := PhaseLine("scan", 1234*time.Microsecond*1000), "vtpmboot: phase scan 1234ms"; got != want {
		t.Errorf("PhaseLine = %q, want %q", got, want)
	}
	for line, want := range map[string]int{
		"vtpmboot: phase scan 12ms": 12,
		"vtpmboot: phase total 0ms": 0,
	} {
		if name, ms, ok := ParsePhase(line); !ok || ms != want || name == "" {
			t.Errorf("ParsePhase(%q) = %q, %d, %v", line, name, ms, ok)
		}
	}
	for _, line := range []string{
		"vtpmboot: phase scan", "vtpmboot: phase scan 12", "vtpmboot: phase scan -1ms",
		"vtpmboot: phase  12ms", "vtpmboot: phase scan 1 2ms", "vtpmboot: booting x", "phase scan 12ms",
	} {
		if name, ms, ok := ParsePhase(line); ok {
			t.Errorf("ParsePhase(%q) = %q, %d, ok", line, name, ms)
		}
	}
}
