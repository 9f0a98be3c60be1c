package loader

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/host/vtpmctl"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// DefaultVTPMBanks are the banks vtpmback provisions a TPM 2.0 with
// (host/swtpm's swtpm_setup --pcr-banks sha1,sha256). vtpmctl has no way
// to ask a vTPM's banks before its boot starts (its pcrs operation
// answers only for a vTPM bound to a running domain), and the boot
// request must carry a digest for exactly the TPM's banks, so the loader
// is told them: --vtpm-banks=sha1 for a TPM 1.2.
var DefaultVTPMBanks = []pcrbank.Alg{pcrbank.SHA1, pcrbank.SHA256}

// VTPMBack measures through vtpmback's control interface (host/vtpmctl):
// one "boot" request resets the vTPM and extends the measurements, so
// vtpmback does not reset that boot again when the guest's device
// appears; the PCRs are then read back and checked, and the event log is
// handed over with "put-log".
type VTPMBack struct {
	Socket string // "" means vtpmctl.DefaultSocket
	Banks  []pcrbank.Alg
}

func (v VTPMBack) Begin(domid int, uuid string) (Session, error) {
	sock := v.Socket
	if sock == "" {
		sock = vtpmctl.DefaultSocket
	}
	if _, err := os.Stat(sock); err != nil {
		return nil, fmt.Errorf("%w: vtpmback's control socket: %v", ErrNoVTPM, err)
	}
	if domid < 0 {
		return nil, fmt.Errorf("vtpmback needs the domain id, which libxl's --output=.../bootloader.<domid>.out carries")
	}
	banks := v.Banks
	if len(banks) == 0 {
		banks = DefaultVTPMBanks
	}
	return &ctlSession{c: &vtpmctl.Client{Socket: sock}, uuid: uuid, domid: uint32(domid), banks: banks}, nil
}

type ctlSession struct {
	c       *vtpmctl.Client
	uuid    string
	domid   uint32
	banks   []pcrbank.Alg
	version pcrbank.Version
}

func (s *ctlSession) Version() pcrbank.Version { return s.version }
func (s *ctlSession) Banks() []pcrbank.Alg     { return s.banks }
func (s *ctlSession) Close() error             { return nil }

// Apply sends the boot and checks the result: vtpmback reset the vTPM,
// so after the boot request each PCR must be the extends replayed from
// zero, in every bank, and the vTPM must have exactly the banks the
// digests were made for. This is measure.Apply's check done from the
// outside, since vtpmback holds the TPM's only connection.
func (s *ctlSession) Apply(ms []measure.Measurement) (*Measured, error) {
	req := make([]vtpmctl.Measurement, len(ms))
	for i, m := range ms {
		d := map[string]string{}
		for a, v := range m.Digests {
			d[a.String()] = hex.EncodeToString(v)
		}
		req[i] = vtpmctl.Measurement{PCR: m.PCR, Digests: d, Event: m.EventData}
	}
	if _, err := s.c.Boot(s.uuid, s.domid, req); err != nil {
		if errors.Is(err, vtpmctl.ErrUnknownVTPM) {
			return nil, fmt.Errorf("%w: %v", ErrNoVTPM, err)
		}
		return nil, fmt.Errorf("vTPM %s: boot of domain %d: %w", s.uuid, s.domid, err)
	}
	pcrs := map[int]bool{}
	for _, m := range ms {
		pcrs[m.PCR] = true
	}
	var list []int
	for p := range pcrs {
		list = append(list, p)
	}
	rsp, err := s.c.PCRs(s.uuid, list)
	if err != nil {
		return nil, fmt.Errorf("vTPM %s: read back PCRs: %w", s.uuid, err)
	}
	switch {
	case strings.Contains(rsp.Version, "2.0"):
		s.version = pcrbank.Version20
	case strings.Contains(rsp.Version, "1.2"):
		s.version = pcrbank.Version12
	default:
		return nil, fmt.Errorf("vTPM %s: version %q", s.uuid, rsp.Version)
	}
	if len(rsp.PCRs) != len(s.banks) {
		return nil, fmt.Errorf("vTPM %s has banks %v, the measurements were made for %v", s.uuid, keys(rsp.PCRs), s.banks)
	}
	var steps []measure.Step
	cur := map[int]pcrbank.Digests{}
	for _, m := range ms {
		before := cur[m.PCR]
		if before == nil {
			before = pcrbank.Digests{}
			for _, a := range s.banks {
				before[a] = make([]byte, a.Size())
			}
		}
		after := pcrbank.Digests{}
		for _, a := range s.banks {
			h := a.New()
			h.Write(before[a])
			h.Write(m.Digests[a])
			after[a] = h.Sum(nil)
		}
		cur[m.PCR] = after
		steps = append(steps, measure.Step{Measurement: m, Before: before, After: after})
	}
	for p, want := range cur {
		for _, a := range s.banks {
			got, err := hex.DecodeString(rsp.PCRs[a.String()][fmt.Sprint(p)])
			if err != nil || !bytes.Equal(got, want[a]) {
				return nil, fmt.Errorf("%w: vTPM %s PCR %d %v is %s after the boot request, want %x", measure.ErrTPMInconsistent, s.uuid, p, a, rsp.PCRs[a.String()][fmt.Sprint(p)], want[a])
			}
		}
	}
	return &Measured{Version: s.version, Banks: s.banks, Steps: steps, Measurements: ms}, nil
}

// PutLog hands the boot's event log to vtpmback (the event-log channel).
func (s *ctlSession) PutLog(log []byte) error { return s.c.PutLog(s.uuid, s.domid, log) }

func keys(m map[string]map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
