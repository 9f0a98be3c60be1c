package vtpmctl

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRequest: whatever a client sends, decoding and Check answer with
// an error or a request within the documented limits; never a panic.
func FuzzRequest(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"op":"put-log","uuid":"00000000-7e57-4000-8000-000000000001","domid":1,"log":"AAAA"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req Request
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if dec.Decode(&req) != nil {
			return
		}
		if req.Check() != nil {
			return
		}
		if !ValidUUID(req.UUID) && req.Op != OpStatus {
			t.Fatalf("accepted uuid %q", req.UUID)
		}
		if len(req.Log) > MaxLog || len(req.Measurements) > MaxMeasurements {
			t.Fatal("accepted an oversized request")
		}
	})
}
