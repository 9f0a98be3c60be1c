package loader

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// Boot is one boot of a guest as the vTPM service sees it.
type Boot struct {
	DomID int
	UUID  string
	// Plan makes the measurements once the vTPM's banks are known.
	Plan func(banks []tpmfront.Alg) ([]measure.Measurement, error)
}

// Measured is what a Measurer did.
type Measured struct {
	Version tpmfront.Version
	Banks   []tpmfront.Alg
	Steps   []measure.Step
	// Measurements are the plan that was applied, for the event log.
	Measurements []measure.Measurement
}

// Measurer starts a guest's boot on its vTPM: the vTPM is reset and the
// plan's measurements are applied as one step, checked as the stub checks
// them (measure.Apply). vtpmback's control interface (issue 16) is one;
// SocketDir, an admin-started swtpm, is the other.
type Measurer interface {
	Measure(b Boot) (*Measured, error)
}

// ErrNoVTPM says the guest has no vTPM the loader can reach.
var ErrNoVTPM = errors.New("no vTPM")

// SocketDir measures into an admin-started swtpm whose command socket is
// Dir/<uuid>.sock (and control channel Dir/<uuid>.ctrl).
type SocketDir struct{ Dir string }

func (s SocketDir) Measure(b Boot) (*Measured, error) {
	sock := filepath.Join(s.Dir, b.UUID+".sock")
	t, err := tpmfront.Dial("unix", sock, tpmfront.DefaultTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w: vTPM %s: %v", ErrNoVTPM, b.UUID, err)
	}
	defer t.Close()
	return applyFresh(t, b)
}

// applyFresh applies b's plan to t, which must be as a boot leaves it: PCRs
// 4 and 5 at zero in every bank. Resetting an swtpm is a control-channel
// command (CMD_INIT) whose client belongs to host/swtpm (issue 16); until
// the loader uses it, a vTPM that already holds a boot's measurements is
// refused rather than measured on top of them, which would give PCRs no
// prediction matches.
func applyFresh(t tpmfront.Target, b Boot) (*Measured, error) {
	banks, err := t.Banks()
	if err != nil {
		return nil, fmt.Errorf("vTPM %s: read PCR banks: %w", b.UUID, err)
	}
	for _, pcr := range []int{measure.PCRKernel, measure.PCRCmdline} {
		for _, a := range banks {
			v, err := t.ReadPCR(pcr, a)
			if err != nil {
				return nil, fmt.Errorf("vTPM %s: read PCR %d (%v): %w", b.UUID, pcr, a, err)
			}
			if slices.ContainsFunc(v, func(c byte) bool { return c != 0 }) {
				return nil, fmt.Errorf("vTPM %s: PCR %d (%v) is not zero: it holds an earlier boot's measurements; restart its swtpm before starting the guest", b.UUID, pcr, a)
			}
		}
	}
	ms, err := b.Plan(banks)
	if err != nil {
		return nil, err
	}
	steps, err := measure.Apply(t, ms)
	if err != nil {
		return nil, fmt.Errorf("vTPM %s: extend %d of %d: %w", b.UUID, len(steps)+1, len(ms), err)
	}
	return &Measured{Version: t.Version(), Banks: banks, Steps: steps, Measurements: ms}, nil
}
