package e2e

import (
	"bufio"
	"bytes"
	_ "crypto/sha1" // registered for go-eventlog's crypto.Hash.New
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"

	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// PCRs maps bank → PCR index → value.
type PCRs map[pcrbank.Alg]map[int][]byte

// Get returns the value of PCR i in bank a, or nil.
func (p PCRs) Get(a pcrbank.Alg, i int) []byte {
	if p[a] == nil {
		return nil
	}
	return p[a][i]
}

func (p PCRs) set(a pcrbank.Alg, i int, v []byte) {
	if p[a] == nil {
		p[a] = map[int][]byte{}
	}
	p[a][i] = v
}

// Banks lists the banks present, in pcrbank order.
func (p PCRs) Banks() []pcrbank.Alg {
	var out []pcrbank.Alg
	for a := range p {
		out = append(out, a)
	}
	pcrbank.SortAlgs(out)
	return out
}

// Replay is the firmware's PCR values computed from its event log by two
// third-party implementations, go-eventlog (github.com/google/go-eventlog,
// SHA-1/256/384) and tpm2-tools' tpm2_eventlog (every bank), never by our
// own boot/eventlog.
type Replay struct {
	// PCRs are the replayed values of every PCR with an event. A PCR
	// without events is absent (it is still all zeros).
	PCRs PCRs
	// By says which tools computed each bank ("go-eventlog+tpm2_eventlog").
	By map[pcrbank.Alg]string
}

// Value is PCR i in bank a after the firmware: the replayed value, or
// zeros when the log has no event for it.
func (r *Replay) Value(a pcrbank.Alg, i int) []byte {
	if v := r.PCRs.Get(a, i); v != nil {
		return v
	}
	return make([]byte, a.Size())
}

// ReplayFirmware replays a firmware event log (TPM 1.2 SHA-1 format or
// TPM 2.0 crypto-agile) with go-eventlog and with tpm2_eventlog; where both
// cover a bank they must agree on every PCR.
func ReplayFirmware(log []byte) (*Replay, error) {
	if len(log) == 0 {
		return nil, fmt.Errorf("empty firmware event log")
	}
	g, err := replayGoEventlog(log, nil)
	if err != nil {
		return nil, fmt.Errorf("go-eventlog: %w", err)
	}
	t, err := replayTPM2Eventlog(log)
	if err != nil {
		return nil, fmt.Errorf("tpm2_eventlog: %w", err)
	}
	r := &Replay{PCRs: PCRs{}, By: map[pcrbank.Alg]string{}}
	for _, a := range pcrbank.AllAlgs {
		gv, tv := g[a], t[a]
		switch {
		case gv != nil && tv != nil:
			if err := samePCRs(a, gv, tv); err != nil {
				return nil, fmt.Errorf("go-eventlog and tpm2_eventlog disagree: %w", err)
			}
			r.By[a] = "go-eventlog+tpm2_eventlog"
		case gv != nil:
			r.By[a] = "go-eventlog"
		case tv != nil:
			r.By[a] = "tpm2_eventlog"
		default:
			continue
		}
		r.PCRs[a] = map[int][]byte{}
		for i, v := range gv {
			r.PCRs[a][i] = v
		}
		for i, v := range tv {
			r.PCRs[a][i] = v
		}
	}
	if len(r.PCRs) == 0 {
		return nil, fmt.Errorf("event log replays to no bank")
	}
	return r, nil
}

func samePCRs(a pcrbank.Alg, x, y map[int][]byte) error {
	for i := 0; i < pcrbank.NumPCRs; i++ {
		if !bytes.Equal(x[i], y[i]) {
			return fmt.Errorf("%v PCR %d: %x vs %x", a, i, x[i], y[i])
		}
	}
	return nil
}

var goEventlogAlgs = map[register.HashAlg]pcrbank.Alg{
	register.HashSHA1:   pcrbank.SHA1,
	register.HashSHA256: pcrbank.SHA256,
	register.HashSHA384: pcrbank.SHA384,
}

// ReplayOnto parses log with go-eventlog and extends its events' digests
// onto start (nil: all zeros), for every bank go-eventlog reads that the
// log carries. It replays the stub's own log too (the test then checks it
// lands on the values the target read).
func ReplayOnto(log []byte, start func(a pcrbank.Alg, pcr int) []byte) (PCRs, error) {
	return replayGoEventlog(log, start)
}

func replayGoEventlog(log []byte, start func(pcrbank.Alg, int) []byte) (PCRs, error) {
	el, err := tcg.ParseEventLog(log, tcg.ParseOpts{AllowPadding: true})
	if err != nil {
		return nil, err
	}
	out := PCRs{}
	for _, ha := range el.Algs {
		a, ok := goEventlogAlgs[ha]
		if !ok {
			continue
		}
		h := ha.CryptoHash()
		for n, ev := range el.Events(ha) {
			if ev.Type == tcg.NoAction {
				continue
			}
			if trailingZeroEvent(ev) {
				// SeaBIOS's TPM 1.2 log area is zero-filled past the
				// last event; an all-zero record is not an event.
				continue
			}
			if len(ev.Digest) != h.Size() {
				return nil, fmt.Errorf("event %d (PCR %d, %v) has no %v digest", n, ev.Index, ev.Type, a)
			}
			old := out.Get(a, ev.Index)
			if old == nil && start != nil {
				old = start(a, ev.Index)
			}
			if old == nil {
				old = make([]byte, h.Size())
			}
			x := h.New()
			x.Write(old)
			x.Write(ev.Digest)
			out.set(a, ev.Index, x.Sum(nil))
		}
	}
	return out, nil
}

func trailingZeroEvent(ev tcg.Event) bool {
	return ev.Index == 0 && ev.Type == 0 && len(ev.Data) == 0 && bytes.Count(ev.Digest, []byte{0}) == len(ev.Digest)
}

// replayTPM2Eventlog runs tpm2_eventlog and reads the "pcrs:" section of
// its YAML.
func replayTPM2Eventlog(log []byte) (PCRs, error) {
	f, err := os.CreateTemp("", "e2e-eventlog-*.bin")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(log); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	var stderr bytes.Buffer
	cmd := exec.Command("tpm2_eventlog", f.Name())
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return parseTPM2EventlogPCRs(out)
}

// parseTPM2EventlogPCRs reads
//
//	pcrs:
//	  sha256:
//	    4  : 0xABCD...
func parseTPM2EventlogPCRs(yaml []byte) (PCRs, error) {
	out := PCRs{}
	sc := bufio.NewScanner(bytes.NewReader(yaml))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	in := false
	var bank pcrbank.Alg
	haveBank := false
	for sc.Scan() {
		line := sc.Text()
		if line == "pcrs:" {
			in = true
			continue
		}
		if !in || strings.TrimSpace(line) == "" {
			continue
		}
		if !strings.HasPrefix(line, "  ") {
			break
		}
		key, val, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			return nil, fmt.Errorf("pcrs section: bad line %q", line)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if val == "" {
			a, err := pcrbank.ParseAlg(key)
			haveBank = err == nil
			bank = a
			continue
		}
		if !haveBank {
			continue // a bank we do not know (sm3_256)
		}
		i, err := strconv.Atoi(key)
		if err != nil {
			return nil, fmt.Errorf("pcrs section: bad PCR index in %q", line)
		}
		v, err := hex.DecodeString(strings.TrimPrefix(val, "0x"))
		if err != nil || len(v) != bank.Size() {
			return nil, fmt.Errorf("pcrs section: bad %v value in %q", bank, line)
		}
		out.set(bank, i, v)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !in {
		return nil, fmt.Errorf("no pcrs: section in its output")
	}
	return out, nil
}

// SplitAppended splits the log the booted kernel shows
// (binary_bios_measurements) into the firmware's part and the stub's
// events, which the stub appended to the firmware's log area
// (boot/acpilog). stubLog is the log the stub printed on its console; its
// events (after its Spec ID header, for a crypto-agile log) must be
// exactly the tail of booted, byte for byte. The split is by bytes, not by
// any parser of ours.
func SplitAppended(booted, stubLog []byte, v pcrbank.Version) (firmware []byte, err error) {
	events := stubLog
	if v == pcrbank.Version20 {
		if len(stubLog) < 32 {
			return nil, fmt.Errorf("stub log of %d bytes has no Spec ID header", len(stubLog))
		}
		n := 32 + int(binary.LittleEndian.Uint32(stubLog[28:]))
		if n > len(stubLog) {
			return nil, fmt.Errorf("stub log header overruns the log")
		}
		events = stubLog[n:]
	}
	if len(events) == 0 || !bytes.HasSuffix(booted, events) {
		return nil, fmt.Errorf("the booted kernel's event log (%d bytes) does not end with the stub's %d bytes of events", len(booted), len(events))
	}
	return booted[:len(booted)-len(events)], nil
}
