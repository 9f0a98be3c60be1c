package tpmback

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/swtpmtest"
	"github.com/vtpmboot/vtpmboot/pcrbank"
)

// rsp is a TPM response of n bytes whose body is filled with b, so two
// responses tell apart by their bytes.
func rsp(n int, b byte) []byte {
	r := bytes.Repeat([]byte{b}, n)
	binary.BigEndian.PutUint16(r, 0x8001)
	binary.BigEndian.PutUint32(r[2:], uint32(n))
	binary.BigEndian.PutUint32(r[6:], 0)
	return r
}

// scripted serves one connection: for each command read, the script's
// next answer (written after its delay, if any), or raw bytes.
type scriptStep struct {
	answer []byte
	after  <-chan struct{} // answer only once this is closed
}

func serveScript(t *testing.T, c net.Conn, script []scriptStep) {
	defer c.Close()
	for _, s := range script {
		var hdr [tpmHeaderSize]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[2:])-tpmHeaderSize)
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		if s.after != nil {
			<-s.after
		}
		if _, err := c.Write(s.answer); err != nil {
			return
		}
	}
}

// scriptedConn is a Unix stream (buffered both ways, as swtpm's socket
// is) whose far end plays script.
func scriptedConn(t *testing.T, script []scriptStep) net.Conn {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer l.Close()
		c, err := l.Accept()
		if err == nil {
			serveScript(t, c, script)
		}
	}()
	c, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A command that timed out, or whose response was too large to read,
// leaves its answer (or the rest of it) on the stream; the next command
// must never be handed that answer. The stream is scripted: swtpm cannot
// be made to answer late or oversized on demand (TestSocketTPMSwtpmLate
// does the late answer with a real swtpm by stopping it).
func TestSocketTPMNeverOutOfStep(t *testing.T) {
	late := make(chan struct{})
	huge := make([]byte, tpmHeaderSize)
	binary.BigEndian.PutUint32(huge[2:], maxResponse+1)
	for name, first := range map[string]scriptStep{
		"timeout":   {answer: rsp(20, 0x11), after: late},
		"oversized": {answer: append(huge, rsp(20, 0x11)...)},
		"too short": {answer: append([]byte{0x80, 1, 0, 0, 0, 4, 0, 0, 0, 0}, rsp(20, 0x11)...)},
	} {
		t.Run(name, func(t *testing.T) {
			s := &SocketTPM{C: scriptedConn(t, []scriptStep{first, {answer: rsp(20, 0x22)}}), Timeout: 200 * time.Millisecond}
			if _, err := s.Transmit(tpmCmd(12)); err == nil {
				t.Fatal("first command succeeded")
			}
			if first.after != nil {
				// The late answer arrives before the next command.
				select {
				case <-late:
				default:
					close(late)
				}
			}
			got, err := s.Transmit(tpmCmd(14))
			if !errors.Is(err, ErrAbandoned) {
				t.Fatalf("second command on the failed connection: %x, %v; want ErrAbandoned", got, err)
			}
			if _, err := s.Transmit(tpmCmd(14)); !errors.Is(err, ErrAbandoned) {
				t.Fatalf("third command: %v", err)
			}
			s.Close()
		})
	}
}

// With Dial, the command after a failure goes on a new connection and
// gets its own answer.
func TestSocketTPMRedial(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	late := make(chan struct{})
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go serveScript(t, c, []scriptStep{{answer: rsp(20, 0x11), after: late}})
		c2, err := l.Accept()
		if err != nil {
			return
		}
		serveScript(t, c2, []scriptStep{{answer: rsp(20, 0x22)}})
	}()
	c, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	dials := 0
	s := &SocketTPM{C: c, Timeout: 200 * time.Millisecond, Dial: func() (net.Conn, error) {
		dials++
		return net.Dial("unix", l.Addr().String())
	}}
	defer s.Close()
	if _, err := s.Transmit(tpmCmd(12)); err == nil {
		t.Fatal("first command succeeded")
	}
	close(late)
	got, err := s.Transmit(tpmCmd(14))
	if err != nil || !bytes.Equal(got, rsp(20, 0x22)) || dials != 1 {
		t.Fatalf("after redial: %x, %v (%d dials); want its own answer %x", got, err, dials, rsp(20, 0x22))
	}
}

// swtpmPID finds the swtpm serving sock (swtpmtest keeps its process to
// itself).
func swtpmPID(t *testing.T, sock string) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "path="+sock+"\x00") {
			return pid
		}
	}
	t.Fatalf("no swtpm process serving %s", sock)
	return 0
}

// TestSocketTPMSwtpmLate makes a real swtpm answer late: stopped
// (SIGSTOP) while a GetRandom is sent, so the command times out, then
// continued, so its answer is written afterwards. The next command, a
// PCR read, must fail (no Dial) or get its own answer (Dial), never the
// GetRandom's. The commands are built here from the TPM specifications'
// layouts; a fresh swtpm's PCR 0 is all zeros.
func TestSocketTPMSwtpmLate(t *testing.T) {
	type cmds struct{ getRandom, pcrRead []byte }
	be := func(f ...any) []byte {
		var b bytes.Buffer
		for _, v := range f {
			binary.Write(&b, binary.BigEndian, v)
		}
		return b.Bytes()
	}
	for _, v := range []pcrbank.Version{pcrbank.Version12, pcrbank.Version20} {
		var c cmds
		var pcr0 []byte // the response's digest, at its end
		if v == pcrbank.Version12 {
			// TPM_GetRandom(8), TPM_PCRRead(0) (TPM 1.2 part 3).
			c = cmds{be(uint16(0xc1), uint32(14), uint32(0x46), uint32(8)), be(uint16(0xc1), uint32(14), uint32(0x15), uint32(0))}
			pcr0 = make([]byte, 20)
		} else {
			// TPM2_GetRandom(8); TPM2_PCR_Read of sha256 PCR 0
			// (TPML_PCR_SELECTION: count 1, TPM_ALG_SHA256, 3 select
			// bytes).
			c = cmds{be(uint16(0x8001), uint32(12), uint32(0x17b), uint16(8)),
				be(uint16(0x8001), uint32(20), uint32(0x17e), uint32(1), uint16(0x0b), uint8(3), uint8(1), uint8(0), uint8(0))}
			pcr0 = make([]byte, 32)
		}
		for _, redial := range []bool{false, true} {
			t.Run(v.String()+map[bool]string{false: "/abandon", true: "/redial"}[redial], func(t *testing.T) {
				sw := swtpmtest.Start(t, v)
				s, err := DialSocket(sw.ServerSock)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if redial {
					s.Dial = func() (net.Conn, error) { return net.DialTimeout("unix", sw.ServerSock, 5*time.Second) }
				}
				// In scriptStep first: a PCR read answers as expected.
				if r, err := s.Transmit(c.pcrRead); err != nil || !bytes.HasSuffix(r, pcr0) || binary.BigEndian.Uint32(r[6:]) != 0 {
					t.Fatalf("PCR read: %x, %v", r, err)
				}
				pid := swtpmPID(t, sw.ServerSock)
				if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				s.Timeout = 300 * time.Millisecond
				_, err = s.Transmit(c.getRandom)
				syscall.Kill(pid, syscall.SIGCONT)
				if err == nil {
					t.Fatal("GetRandom to a stopped swtpm succeeded")
				}
				s.Timeout = 30 * time.Second
				r, err := s.Transmit(c.pcrRead)
				switch {
				case !redial && !errors.Is(err, ErrAbandoned):
					t.Fatalf("PCR read after the timeout: %x, %v; want ErrAbandoned", r, err)
				case redial && (err != nil || !bytes.HasSuffix(r, pcr0) || binary.BigEndian.Uint32(r[6:]) != 0 || len(r) == len(c.getRandom)+8):
					t.Fatalf("PCR read after the timeout, redialled: %x, %v; want its own answer ending in %x", r, err, pcr0)
				}
			})
		}
	}
}
