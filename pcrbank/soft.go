package pcrbank

import (
	"fmt"
	"sync"
)

// Soft is a software PCR bank: it computes in memory what a TPM would
// compute, for any set of banks, from configurable starting values.
type Soft struct {
	mu    sync.Mutex
	banks []Alg
	pcrs  map[Alg][NumPCRs][]byte
}

// NewSoft returns a bank set with every PCR at zero. PCRs 17..22 of a real
// TPM reset to all-ones, but vtpmboot never touches them and a Xen vTPM
// starts every PCR the stub uses at zero.
func NewSoft(banks []Alg) (*Soft, error) {
	if len(banks) == 0 {
		return nil, fmt.Errorf("software PCR bank needs at least one bank")
	}
	s := &Soft{pcrs: map[Alg][NumPCRs][]byte{}}
	for _, a := range banks {
		if !a.Valid() {
			return nil, fmt.Errorf("software PCR bank: unsupported bank %v", a)
		}
		if _, dup := s.pcrs[a]; dup {
			continue
		}
		var p [NumPCRs][]byte
		for i := range p {
			p[i] = a.Zero()
		}
		s.pcrs[a] = p
		s.banks = append(s.banks, a)
	}
	SortAlgs(s.banks)
	return s, nil
}

// SetPCR sets a starting value, e.g. what firmware measured before the stub.
func (s *Soft) SetPCR(pcr int, a Alg, value []byte) error {
	if err := checkPCR(pcr); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pcrs[a]
	if !ok {
		return fmt.Errorf("set PCR %d: bank %v is not active (active %v)", pcr, a, s.banks)
	}
	if len(value) != a.Size() {
		return fmt.Errorf("set PCR %d %v: value is %d bytes, want %d", pcr, a, len(value), a.Size())
	}
	p[pcr] = append([]byte(nil), value...)
	s.pcrs[a] = p
	return nil
}

func (s *Soft) Version() Version { return VersionSoftware }

func (s *Soft) Banks() ([]Alg, error) { return append([]Alg(nil), s.banks...), nil }

func (s *Soft) Extend(pcr int, d Digests) error {
	if err := checkPCR(pcr); err != nil {
		return err
	}
	if err := CheckDigests(s.banks, d); err != nil {
		return fmt.Errorf("extend PCR %d: %w", pcr, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.banks {
		p := s.pcrs[a]
		p[pcr] = ExtendValue(a, p[pcr], d[a])
		s.pcrs[a] = p
	}
	return nil
}

func (s *Soft) ReadPCR(pcr int, a Alg) ([]byte, error) {
	if err := checkPCR(pcr); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pcrs[a]
	if !ok {
		return nil, fmt.Errorf("read PCR %d: bank %v is not active (active %v)", pcr, a, s.banks)
	}
	return append([]byte(nil), p[pcr]...), nil
}

func (s *Soft) Close() error { return nil }
