// Package measure is the measurement plan of vtpmboot: which bytes are
// hashed, in which order, into which PCR, and with which event-log text.
// The stub and pcrsim both call Plan and Apply; nothing else decides what a
// measurement is, so a prediction cannot drift from what the stub does.
package measure

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// Kind names what a measurement covers; the strings appear in pcrsim's JSON.
type Kind string

const (
	KindKernel  Kind = "kernel"
	KindCmdline Kind = "cmdline"
	KindInitrd  Kind = "initrd"
)

// ContractVersion is the version of the measurement contract this plan
// implements (docs/measurements.md). It changes whenever the same inputs
// would give different PCR values; pcrsim records it in its JSON and
// prints it with --version, so a stored prediction says which rules made it.
const ContractVersion = 1

// The PCRs of the measurement contract (version 1), following the order of
// Xen's pv-grub vTPM patch: kernel into 4, command line then initrd into 5.
const (
	PCRKernel  = 4
	PCRCmdline = 5
	PCRInitrd  = 5
)

// Inputs is what a boot entry resolves to.
type Inputs struct {
	Kernel Source
	// Initrds are measured as one image, exactly as the kernel gets it:
	// the files in order, each but the last followed by zero bytes up to
	// a multiple of InitrdAlign (see InitrdPadding). None at all measures
	// the empty string.
	Initrds []Source
	// Cmdline is the exact command line the next kernel receives, with no
	// trailing NUL.
	Cmdline string
}

// InitrdAlign is the alignment of each initrd file inside the initrd
// image. Linux finds an uncompressed cpio archive only at a 4-byte-aligned
// offset, so GRUB2 (grub_initrd_load) zero-pads between initrd files; the
// stub lays them out the same way, and the padding is measured because it
// is part of what the kernel receives.
const InitrdAlign = 4

// InitrdPadding is the number of zero bytes that follow an initrd file of
// the given size when another file comes after it.
func InitrdPadding(size int64) int64 {
	return (InitrdAlign - size%InitrdAlign) % InitrdAlign
}

// Measurement is one extend of the plan.
type Measurement struct {
	PCR  int
	Kind Kind
	// Source names what was measured: the kernel path, the initrd paths
	// joined by spaces, or the command line itself.
	Source  string
	Digests pcrbank.Digests
	// EventData is the event-log text of this measurement (EV_IPL).
	EventData []byte
}

// Event-log texts. They are part of the contract: pcrsim writes the same
// log the stub prints, so changing them changes no PCR but does change
// every log a verifier has stored.
// Every event is EventPrefix, the kind, ": " and the source:
// "vtpmboot kernel: /boot/vmlinuz" (EventData). eventlog recognises the
// stub's events by EventPrefix and pcrsim rebuilds a plan's events from
// its JSON with EventData, so this is the one place the text is spelled.
const (
	EventPrefix  = "vtpmboot "
	noInitrdName = "(none)"
)

// EventData is the event-log text of a measurement of kind k of source.
func EventData(k Kind, source string) []byte {
	return []byte(EventPrefix + string(k) + ": " + source)
}

// Plan hashes the inputs in every bank and returns the three measurements
// of the contract in order. A nil hasher means StreamHasher{}.
func Plan(algs []pcrbank.Alg, in Inputs, h Hasher) ([]Measurement, error) {
	if len(algs) == 0 {
		return nil, errors.New("measurement plan: no PCR banks")
	}
	if in.Kernel == nil {
		return nil, errors.New("measurement plan: no kernel")
	}
	if h == nil {
		h = StreamHasher{}
	}
	kd, err := h.Hash(algs, []Source{in.Kernel})
	if err != nil {
		return nil, fmt.Errorf("measure kernel: %w", err)
	}
	// No initrd is an empty image, whose digest is the empty string's:
	// what pv-grub extended when an entry had no initrd.
	img := InitrdImage(in.Initrds)
	id, err := h.Hash(algs, []Source{img})
	if err != nil {
		return nil, fmt.Errorf("measure initrd: %w", err)
	}
	initrdName := img.Name()
	if len(in.Initrds) == 0 {
		initrdName = noInitrdName
	}
	return []Measurement{
		{PCR: PCRKernel, Kind: KindKernel, Source: in.Kernel.Name(), Digests: kd,
			EventData: EventData(KindKernel, in.Kernel.Name())},
		{PCR: PCRCmdline, Kind: KindCmdline, Source: in.Cmdline, Digests: HashBytes(algs, []byte(in.Cmdline)),
			EventData: EventData(KindCmdline, in.Cmdline)},
		{PCR: PCRInitrd, Kind: KindInitrd, Source: initrdName, Digests: id,
			EventData: EventData(KindInitrd, initrdName)},
	}, nil
}

// Step is a measurement as applied to a Target, with the PCR around it.
type Step struct {
	Measurement
	Before, After pcrbank.Digests
}

// Apply extends each measurement into t in order, reading the PCR before
// and after each extend, and checks the TPM did what it said: in every
// bank the value after must be H(before || digest), and where the extend
// command itself answers with the new value (TPM 1.2) that answer must be
// it too. A TPM that reports success while skipping a bank, or extends
// something else, fails here with an *ExtendMismatchError. Apply stops at
// the first failure and returns the steps that completed, so a caller can
// say how far it got.
func Apply(t pcrbank.Target, ms []Measurement) ([]Step, error) {
	banks, err := t.Banks()
	if err != nil {
		return nil, fmt.Errorf("list PCR banks: %w", err)
	}
	var steps []Step
	for _, m := range ms {
		if err := pcrbank.CheckDigests(banks, m.Digests); err != nil {
			return steps, fmt.Errorf("%s measurement for PCR %d: %w", m.Kind, m.PCR, err)
		}
		before, err := readAll(t, m.PCR, banks)
		if err != nil {
			return steps, err
		}
		var answered pcrbank.Digests
		if r, ok := t.(pcrbank.ExtendResulter); ok {
			answered, err = r.ExtendResult(m.PCR, m.Digests)
		} else {
			err = t.Extend(m.PCR, m.Digests)
		}
		if err != nil {
			return steps, fmt.Errorf("extend PCR %d with %s digest: %w", m.PCR, m.Kind, err)
		}
		after, err := readAll(t, m.PCR, banks)
		if err != nil {
			return steps, err
		}
		for _, a := range banks {
			h := a.New()
			h.Write(before[a])
			h.Write(m.Digests[a])
			want := h.Sum(nil)
			if got, ok := answered[a]; ok && !bytes.Equal(got, want) {
				return steps, &ExtendMismatchError{PCR: m.PCR, Kind: m.Kind, Alg: a, Before: before[a], Digest: m.Digests[a], Want: want, Got: got, From: "the extend command's answer"}
			}
			if !bytes.Equal(after[a], want) {
				return steps, &ExtendMismatchError{PCR: m.PCR, Kind: m.Kind, Alg: a, Before: before[a], Digest: m.Digests[a], Want: want, Got: after[a], From: "reading the PCR back"}
			}
		}
		steps = append(steps, Step{Measurement: m, Before: before, After: after})
	}
	return steps, nil
}

// ErrTPMInconsistent is wrapped by every ExtendMismatchError.
var ErrTPMInconsistent = errors.New("the TPM's PCR value does not follow from the extend")

// ExtendMismatchError says a TPM accepted an extend but its PCR did not
// become H(before || digest).
type ExtendMismatchError struct {
	PCR                       int
	Kind                      Kind
	Alg                       pcrbank.Alg
	Before, Digest, Want, Got []byte
	// From is where Got came from.
	From string
}

func (e *ExtendMismatchError) Error() string {
	return fmt.Sprintf("%v: PCR %d %v after extending the %s digest %x onto %x is %x (from %s), want %x",
		ErrTPMInconsistent, e.PCR, e.Alg, e.Kind, e.Digest, e.Before, e.Got, e.From, e.Want)
}

func (e *ExtendMismatchError) Unwrap() error { return ErrTPMInconsistent }

func readAll(t pcrbank.Target, pcr int, banks []pcrbank.Alg) (pcrbank.Digests, error) {
	d := make(pcrbank.Digests, len(banks))
	for _, a := range banks {
		v, err := t.ReadPCR(pcr, a)
		if err != nil {
			return nil, fmt.Errorf("read PCR %d (%v): %w", pcr, a, err)
		}
		d[a] = v
	}
	return d, nil
}
