package tpmfront

import (
	"bytes"
	"encoding/binary"
	"errors"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// scripted is a TPM whose answers come from a fixed byte stream, whatever
// it is asked. A mock, used only for what a real swtpm cannot be made to
// say: malformed responses (fuzzing) and PCR banks libtpms does not
// implement. Like a real TPM it hands out one response per command: each
// Write releases the next response as its header sizes it (or all that is
// left when the header is nonsense).
type scripted struct {
	r       *bytes.Reader
	chunk   int // max bytes per Read; 0 = unlimited
	pending []byte
	closed  bool
}

func (s *scripted) Write(p []byte) (int, error) {
	rest := make([]byte, s.r.Len())
	s.r.Read(rest)
	n := len(rest)
	if len(rest) >= 6 {
		if size := int(binary.BigEndian.Uint32(rest[2:])); size >= headerSize && size < n {
			n = size
		}
	}
	s.pending = rest[:n]
	s.r = bytes.NewReader(rest[n:])
	return len(p), nil
}

func (s *scripted) Read(p []byte) (int, error) {
	if len(s.pending) == 0 {
		return 0, io.EOF
	}
	if s.chunk > 0 && len(p) > s.chunk {
		p = p[:s.chunk]
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}
func (s *scripted) Close() error { s.closed = true; return nil }

func seeds(f *testing.F) [][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "responses", "*.bin"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata/responses: %v", err)
	}
	var out [][]byte
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzTarget drives a whole session (open, extend, read every bank) over
// arbitrary TPM answers: whatever a broken or hostile TPM sends must give
// an error, never a panic or a hang.
func FuzzTarget(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s, uint8(0))
		f.Add(s, uint8(3))
	}
	busyBackoff = 0
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		rw := &scripted{r: bytes.NewReader(data), chunk: int(chunk)}
		tg, err := OpenReadWriter(rw)
		if err != nil {
			if !rw.closed {
				t.Error("failed open did not close the connection")
			}
			return
		}
		defer tg.Close()
		banks, err := tg.Banks()
		if err != nil || len(banks) == 0 {
			t.Fatalf("opened Target has banks %v, %v", banks, err)
		}
		d := pcrbank.Digests{}
		for _, a := range banks {
			if !a.Valid() {
				t.Fatalf("opened Target has bank %v it cannot compute", a)
			}
			d[a] = make([]byte, a.Size())
		}
		tg.Extend(4, d)
		for _, a := range banks {
			if v, err := tg.ReadPCR(4, a); err == nil && len(v) != a.Size() {
				t.Fatalf("ReadPCR %v gave %d bytes", a, len(v))
			}
		}
	})
}

// FuzzReadResponse checks the framing alone: a response is returned only
// whole and exactly as long as its header says.
func FuzzReadResponse(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s, uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		buf := make([]byte, MaxResponse)
		// Unlike scripted, the stream here may hold more than one
		// response: the framer must refuse the surplus, not return it.
		rsp, err := readResponse(&chunked{data: data, chunk: int(chunk)}, buf)
		if err != nil {
			return
		}
		if len(rsp) < headerSize || int(binary.BigEndian.Uint32(rsp[2:])) != len(rsp) || !bytes.Equal(rsp, data[:len(rsp)]) {
			t.Fatalf("readResponse returned %x from %x", rsp, data)
		}
	})
}

type chunked struct {
	data  []byte
	chunk int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	if c.chunk > 0 && len(p) > c.chunk {
		p = p[:c.chunk]
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

// rsp20 builds a TPM 2.0 response.
func rsp20(rc uint32, body []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, tag20NoSessions)
	b = binary.BigEndian.AppendUint32(b, uint32(headerSize+len(body)))
	b = binary.BigEndian.AppendUint32(b, rc)
	return append(b, body...)
}

// pcrCap is a GetCapability(TPM_CAP_PCRS) response body.
func pcrCap(sel map[uint16][]byte, order ...uint16) []byte {
	b := []byte{0}                          // moreData
	b = binary.BigEndian.AppendUint32(b, 5) // TPM_CAP_PCRS
	b = binary.BigEndian.AppendUint32(b, uint32(len(order)))
	for _, alg := range order {
		b = binary.BigEndian.AppendUint16(b, alg)
		b = append(b, byte(len(sel[alg])))
		b = append(b, sel[alg]...)
	}
	return b
}

func openScripted(t *testing.T, responses ...[]byte) (pcrbank.Target, error) {
	t.Helper()
	return OpenReadWriter(&scripted{r: bytes.NewReader(bytes.Join(responses, nil))})
}

// TestUnknownBankRefused: libtpms (swtpm) implements no SM3 or SHA-3 PCR
// bank, so this allocation is scripted. An allocated bank we cannot hash
// must stop Open, not be skipped.
func TestUnknownBankRefused(t *testing.T) {
	all := []byte{0xff, 0xff, 0xff}
	c := rsp20(0, pcrCap(map[uint16][]byte{0x0b: all, 0x12: all}, 0x0b, 0x12))
	_, err := openScripted(t, c, c)
	if err == nil || !strings.Contains(err.Error(), "sm3_256") {
		t.Fatalf("Open with an sm3_256 bank = %v, want an error naming sm3_256", err)
	}
	// An unallocated (empty selection) unknown bank is fine.
	c = rsp20(0, pcrCap(map[uint16][]byte{0x04: {0, 0, 0}, 0x0b: all, 0x12: {0, 0, 0}}, 0x04, 0x0b, 0x12))
	tg, err := openScripted(t, c, c)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := tg.Banks(); len(b) != 1 || b[0] != pcrbank.SHA256 {
		t.Errorf("Banks() = %v, want [sha256]", b)
	}
	// No bank at all.
	c = rsp20(0, pcrCap(map[uint16][]byte{0x0b: {0, 0, 0}}, 0x0b))
	if _, err := openScripted(t, c, c); err == nil {
		t.Error("Open with no allocated bank succeeded")
	}
}

func TestOpenBadAnswers(t *testing.T) {
	for name, stream := range map[string][]byte{
		"empty":          nil,
		"short header":   {0x80, 0x01, 0, 0},
		"huge size":      {0x80, 0x01, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0},
		"size below 10":  {0x80, 0x01, 0, 0, 0, 4, 0, 0, 0, 0},
		"unknown tag":    {0x12, 0x34, 0, 0, 0, 10, 0, 0, 0, 0},
		"truncated body": {0x80, 0x01, 0, 0, 0, 40, 0, 0, 0, 0, 1, 2},
		"cap error":      append(rsp20(0, pcrCap(nil)), rsp20(0x100, nil)...),
	} {
		if _, err := openScripted(t, stream); err == nil {
			t.Errorf("%s: Open succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	_, err := openScripted(t, []byte{0x80, 0x01, 0, 0, 0, 40, 0, 0, 0, 0, 1, 2})
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "TPM2_GetCapability") {
		t.Errorf("truncated response: %v, want ErrUnexpectedEOF naming TPM2_GetCapability", err)
	}
}
