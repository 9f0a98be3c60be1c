package stub

import (
	"strconv"
	"strings"
	"time"
)

// The stub's console lines, written here (run.printf, run.phase) and read
// by the tests, the demo and the benchmark through these names only. The
// event log's lines between eventlog.BeginMarker and EndMarker belong to
// package eventlog, which prints and extracts them.
const (
	// LinePrefix starts every line of the stub's.
	LinePrefix = "vtpmboot: "
	// FatalPrefix starts the line the stub prints before powering off.
	FatalPrefix = LinePrefix + fatalTag
	// PhasePrefix starts a phase timing: "vtpmboot: phase NAME Nms".
	PhasePrefix = LinePrefix + "phase "
	// BootingPrefix starts the last line before kexec.
	BootingPrefix = LinePrefix + bootingTag

	fatalTag   = "FATAL: "
	bootingTag = "booting "
)

// PhaseLine is the line timing phase name at d.
func PhaseLine(name string, d time.Duration) string {
	return PhasePrefix + name + " " + strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// ParsePhase reads a PhaseLine back: the phase's name and milliseconds.
func ParsePhase(line string) (name string, ms int, ok bool) {
	rest, ok := strings.CutPrefix(line, PhasePrefix)
	if !ok {
		return "", 0, false
	}
	name, num, ok := strings.Cut(rest, " ")
	num, unit := strings.CutSuffix(num, "ms")
	if !ok || !unit || name == "" || strings.ContainsAny(num, " +-") {
		return "", 0, false
	}
	ms, err := strconv.Atoi(num)
	if err != nil {
		return "", 0, false
	}
	return name, ms, true
}
