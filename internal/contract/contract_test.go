package contract

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"testing"
)

// Values worked out by hand from published test vectors, so the oracle
// itself is checked against something outside this repository:
// SHA-256("") = e3b0c442..., SHA-1("") = da39a3ee....
func TestOracleByHand(t *testing.T) {
	if got := hex.EncodeToString(Digest(crypto.SHA256)); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("sha256 of nothing %s", got)
	}
	if got := hex.EncodeToString(Digest(crypto.SHA1)); got != "da39a3ee5e6b4b0d3255bfef95601890afd80709" {
		t.Errorf("sha1 of nothing %s", got)
	}
	if got := InitrdImage([]byte("abcde"), []byte("fg"), []byte("h")); !bytes.Equal(got, []byte("abcde\x00\x00\x00fg\x00\x00h")) {
		t.Errorf("image %q", got)
	}
	// No initrd: PCR 5 ends with the empty string's digest.
	b := Boot{Cmdline: "x"}
	h := crypto.SHA256
	want := Digest(h, Digest(h, make([]byte, 32), Digest(h, []byte("x"))), Digest(h))
	if !bytes.Equal(b.PCR5(h, nil), want) {
		t.Error("PCR 5 without initrd")
	}
}
