package loader

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// Measured is what a boot's measurement did.
type Measured struct {
	Version pcrbank.Version
	Banks   []pcrbank.Alg
	Steps   []measure.Step
	// Measurements are the plan that was applied, for the event log.
	Measurements []measure.Measurement
}

// Measurer starts a guest's boot on its vTPM. vtpmback's control interface
// (issue 16: "a boot of domain D with vTPM U is starting: reset U and
// apply these measurements") is to be one; SocketDir, an admin-started
// swtpm, is today's.
type Measurer interface {
	// Begin opens the vTPM of a boot of domain domid, ready to measure
	// into: its banks are known before the disk is read, so the loader
	// hashes the chosen bytes as they arrive.
	Begin(domid int, uuid string) (Session, error)
}

// Session is one boot's measurement.
type Session interface {
	Version() pcrbank.Version
	Banks() []pcrbank.Alg
	// Apply extends the measurements in order and checks each extend as
	// the stub does (measure.Apply).
	Apply(ms []measure.Measurement) (*Measured, error)
	Close() error
}

// ErrNoVTPM says the guest has no vTPM the loader can reach.
var ErrNoVTPM = errors.New("no vTPM")

// SocketDir measures into an admin-started swtpm whose command socket is
// Dir/<uuid>.sock (and control channel Dir/<uuid>.ctrl), vtpmback's
// layout.
type SocketDir struct{ Dir string }

func (s SocketDir) Begin(domid int, uuid string) (Session, error) {
	sock := filepath.Join(s.Dir, uuid+".sock")
	t, err := tpmfront.Dial("unix", sock, tpmfront.DefaultTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w: vTPM %s: %v", ErrNoVTPM, uuid, err)
	}
	ts, err := freshTarget(t, uuid)
	if err != nil {
		t.Close()
		return nil, err
	}
	return ts, nil
}

// targetSession measures into a pcrbank.Target.
type targetSession struct {
	t     pcrbank.Target
	uuid  string
	banks []pcrbank.Alg
}

// freshTarget checks t is as a boot leaves it: PCRs 4 and 5 at zero in
// every bank. Resetting an swtpm is a control-channel command (CMD_INIT)
// whose client belongs to host/swtpm (issue 16); until the loader uses it,
// a vTPM that already holds a boot's measurements is refused rather than
// measured on top of them, which would give PCRs no prediction matches.
func freshTarget(t pcrbank.Target, uuid string) (*targetSession, error) {
	banks, err := t.Banks()
	if err != nil {
		return nil, fmt.Errorf("vTPM %s: read PCR banks: %w", uuid, err)
	}
	for _, pcr := range []int{measure.PCRKernel, measure.PCRCmdline} {
		for _, a := range banks {
			v, err := t.ReadPCR(pcr, a)
			if err != nil {
				return nil, fmt.Errorf("vTPM %s: read PCR %d (%v): %w", uuid, pcr, a, err)
			}
			if slices.ContainsFunc(v, func(c byte) bool { return c != 0 }) {
				return nil, fmt.Errorf("vTPM %s: PCR %d (%v) is not zero: it holds an earlier boot's measurements; restart its swtpm before starting the guest", uuid, pcr, a)
			}
		}
	}
	return &targetSession{t: t, uuid: uuid, banks: banks}, nil
}

func (s *targetSession) Version() pcrbank.Version { return s.t.Version() }
func (s *targetSession) Banks() []pcrbank.Alg     { return s.banks }
func (s *targetSession) Close() error             { return s.t.Close() }

func (s *targetSession) Apply(ms []measure.Measurement) (*Measured, error) {
	steps, err := measure.Apply(s.t, ms)
	if err != nil {
		return nil, fmt.Errorf("vTPM %s: extend %d of %d: %w", s.uuid, len(steps)+1, len(ms), err)
	}
	return &Measured{Version: s.t.Version(), Banks: s.banks, Steps: steps, Measurements: ms}, nil
}
