package tpmfront_test

import (
	"bytes"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/vtpmboot/vtpmboot/internal/golden"
	"github.com/vtpmboot/vtpmboot/internal/swtpmtest"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"github.com/vtpmboot/vtpmboot/tpmfront"
)

// recorder keeps every byte the TPM sent.
type recorder struct {
	net.Conn
	got bytes.Buffer
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.got.Write(p[:n])
	return n, err
}

// TestRecordedSessions runs a fixed session (open, extend, read every bank,
// a refused extend and read of PCR 30) against swtpm and checks that the
// response stream equals testdata/responses/*.bin, the fuzz seeds: the
// seeds are what a real TPM says, not something we made up.
// `go test ./tpmfront -run TestRecordedSessions -args -update` rewrites them.
func TestRecordedSessions(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			in := swtpmtest.Start(t, v)
			nc, err := net.Dial("unix", in.ServerSock)
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{Conn: nc}
			tg, err := tpmfront.OpenReadWriter(rec)
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Close()
			d := allDigests(t, tg, []byte("kernel"))
			if err := tg.Extend(4, d); err != nil {
				t.Fatal(err)
			}
			banks, _ := tg.Banks()
			for _, a := range banks {
				if _, err := tg.ReadPCR(4, a); err != nil {
					t.Fatal(err)
				}
			}
			if err := tg.Extend(30, d); err == nil {
				t.Fatal("Extend(30) succeeded")
			}
			tg.ReadPCR(30, pcrbank.SHA1)
			file := filepath.Join("testdata", "responses", fmt.Sprintf("tpm%d-session.bin", map[pcrbank.Version]int{pcrbank.Version12: 12, pcrbank.Version20: 20}[v]))
			golden.Bytes(t, file, rec.got.Bytes())
		})
	}
}
