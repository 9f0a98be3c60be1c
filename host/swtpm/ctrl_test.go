package swtpm

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/vtpmboot/vtpmboot/internal/swtpmtest"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// open connects both channels of a running swtpm, as vtpmback holds them.
func open(t *testing.T, in *swtpmtest.Instance) (*Ctrl, *Data) {
	t.Helper()
	c, err := DialCtrl(in.CtrlSock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	d, err := DialData(in.ServerSock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return c, d
}

func target(t *testing.T, d *Data) pcrbank.Target {
	t.Helper()
	tg, err := tpmfront.OpenReadWriter(ReadWriter(d))
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// bank is the bank each version is checked in: SHA-1 on 1.2, SHA-256 on
// 2.0 (a fresh swtpm 2.0 state without swtpm_setup allocates both).
func bank(v pcrbank.Version) pcrbank.Alg {
	if v == pcrbank.Version12 {
		return pcrbank.SHA1
	}
	return pcrbank.SHA256
}

// extended is H(0^n || H(data)), computed with crypto/sha* (the
// contract's formula), independent of tpmfront.
func extended(a pcrbank.Alg, data []byte) []byte {
	if a == pcrbank.SHA1 {
		d := sha1.Sum(data)
		v := sha1.Sum(append(make([]byte, 20), d[:]...))
		return v[:]
	}
	d := sha256.Sum256(data)
	v := sha256.Sum256(append(make([]byte, 32), d[:]...))
	return v[:]
}

func readPCR(t *testing.T, tg pcrbank.Target, pcr int, a pcrbank.Alg) []byte {
	t.Helper()
	v, err := tg.ReadPCR(pcr, a)
	if err != nil {
		t.Fatalf("read PCR %d: %v", pcr, err)
	}
	return v
}

// extendOnly puts one measurement into PCR 16 in the checked bank only
// (a TPM 2.0 extend must name each allocated bank it extends; the other
// banks are left alone, which TPM2_PCR_Extend allows).
func extendOnly(t *testing.T, tg pcrbank.Target, a pcrbank.Alg, data []byte) {
	t.Helper()
	banks, err := tg.Banks()
	if err != nil {
		t.Fatal(err)
	}
	d := pcrbank.Digests{}
	for _, b := range banks {
		h := b.New()
		h.Write(data)
		d[b] = h.Sum(nil)
	}
	if err := tg.Extend(16, d); err != nil {
		t.Fatalf("extend PCR 16: %v", err)
	}
	if got := readPCR(t, tg, 16, a); !bytes.Equal(got, extended(a, data)) {
		t.Fatalf("PCR 16 after one extend = %x, want %x", got, extended(a, data))
	}
}

func versions(t *testing.T, f func(t *testing.T, v pcrbank.Version)) {
	for _, v := range []pcrbank.Version{pcrbank.Version12, pcrbank.Version20} {
		t.Run(v.String(), func(t *testing.T) { f(t, v) })
	}
}

func TestCapabilities(t *testing.T) {
	versions(t, func(t *testing.T, v pcrbank.Version) {
		in := swtpmtest.Start(t, v)
		c, _ := open(t, in)
		caps, err := c.Capabilities()
		if err != nil {
			t.Fatal(err)
		}
		// What vtpmback needs; swtpm 0.7.1's ctrlchannel.c lists these
		// and more.
		want := CapInit | CapShutdown | CapStoreVolatile | CapStop | CapGetStateBlob | CapSetStateBlob
		if caps&want != want {
			t.Fatalf("capabilities %#x lack %#x", caps, want&^caps)
		}
	})
}

// A reset after an extend gives the power-on PCR value (zero for PCR 16,
// TCG PC Client) and leaves the TPM started.
func TestResetZeroesPCRs(t *testing.T) {
	versions(t, func(t *testing.T, v pcrbank.Version) {
		in := swtpmtest.Start(t, v)
		c, d := open(t, in)
		a := bank(v)
		tg := target(t, d)
		extendOnly(t, tg, a, []byte("boot 1"))
		tpm2, err := Reset(c, d)
		if err != nil {
			t.Fatalf("reset: %v; log: %s", err, in.Log())
		}
		if tpm2 != (v == pcrbank.Version20) {
			t.Errorf("Reset says tpm2=%v on a %v", tpm2, v)
		}
		if got := readPCR(t, tg, 16, a); !bytes.Equal(got, make([]byte, a.Size())) {
			t.Fatalf("PCR 16 after reset = %x, want zero", got)
		}
		extendOnly(t, tg, a, []byte("boot 2")) // the TPM works after it
	})
}

// A volatile state stored earlier must not survive a reset: CMD_INIT
// loads it before deleting it (swtpm's tpmlib_start), and Reset must
// notice.
func TestResetAfterStoreVolatile(t *testing.T) {
	versions(t, func(t *testing.T, v pcrbank.Version) {
		in := swtpmtest.Start(t, v)
		c, d := open(t, in)
		a := bank(v)
		tg := target(t, d)
		extendOnly(t, tg, a, []byte("saved boot"))
		if err := c.StoreVolatile(); err != nil {
			t.Fatal(err)
		}
		if _, err := Reset(c, d); err != nil {
			t.Fatalf("reset: %v; log: %s", err, in.Log())
		}
		if got := readPCR(t, tg, 16, a); !bytes.Equal(got, make([]byte, a.Size())) {
			t.Fatalf("PCR 16 after reset over a stored volatile state = %x, want zero", got)
		}
	})
}

// Init without the flag resumes from the stored volatile state: the PCRs
// are what they were, and the TPM is started already. This is what a
// restore relies on.
func TestResumeFromVolatile(t *testing.T) {
	versions(t, func(t *testing.T, v pcrbank.Version) {
		in := swtpmtest.Start(t, v)
		c, d := open(t, in)
		a := bank(v)
		tg := target(t, d)
		extendOnly(t, tg, a, []byte("running OS"))
		if err := c.StoreVolatile(); err != nil {
			t.Fatal(err)
		}
		if err := c.Init(false); err != nil {
			t.Fatal(err)
		}
		if _, err := Startup(d); !errors.Is(err, ErrAlreadyStarted) {
			t.Fatalf("Startup after resuming: %v, want ErrAlreadyStarted", err)
		}
		if got := readPCR(t, tg, 16, a); !bytes.Equal(got, extended(a, []byte("running OS"))) {
			t.Fatalf("PCR 16 after resume = %x, want the saved %x", got, extended(a, []byte("running OS")))
		}
	})
}

// Shutdown ends the process (swtpm's CMD_SHUTDOWN sets terminate).
func TestShutdownEndsSwtpm(t *testing.T) {
	versions(t, func(t *testing.T, v pcrbank.Version) {
		in := swtpmtest.Start(t, v)
		c, _ := open(t, in)
		if err := c.Shutdown(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			conn, err := net.Dial("unix", in.CtrlSock)
			if err != nil {
				return // gone
			}
			conn.Close()
			if time.Now().After(deadline) {
				t.Fatal("swtpm still accepts control connections 10 s after CMD_SHUTDOWN")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// A request swtpm cannot parse (CMD_INIT with a 2-byte body): swtpm
// 0.7.1 drops the connection (checked against the real process), and
// the client says so promptly instead of waiting for its timeout.
func TestBadRequestFails(t *testing.T) {
	in := swtpmtest.Start(t, pcrbank.Version20)
	c, _ := open(t, in)
	c.Timeout = 5 * time.Second
	start := time.Now()
	_, err := c.roundTrip("INIT", cmdInit, []byte{0, 0}, 4)
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("got %v, want ErrProtocol", err)
	}
	if time.Since(start) > 4*time.Second {
		t.Fatalf("took %v: the client waited for a timeout", time.Since(start))
	}
}

// Protocol errors from a broken peer (here a pipe standing in for a
// dying swtpm; the real process cannot be made to half-answer) name the
// command and wrap ErrProtocol.
func TestShortAnswer(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go func() {
		var req [4]byte
		b.Read(req[:])
		b.Write([]byte{0, 0, 0}) // 3 of 8 bytes, then gone
		b.Close()
	}()
	_, err := NewCtrl(a).Capabilities()
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("got %v, want ErrProtocol", err)
	}
}

func TestStartupVersions(t *testing.T) {
	versions(t, func(t *testing.T, v pcrbank.Version) {
		in := swtpmtest.Start(t, v) // started by --flags startup-clear
		_, d := open(t, in)
		tpm2, err := Startup(d)
		if !errors.Is(err, ErrAlreadyStarted) {
			t.Fatalf("Startup on a started TPM: %v, want ErrAlreadyStarted", err)
		}
		if tpm2 != (v == pcrbank.Version20) {
			t.Errorf("Startup says tpm2=%v on a %v", tpm2, v)
		}
	})
}
