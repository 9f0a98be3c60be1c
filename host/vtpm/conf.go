package vtpm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/vtpmboot/vtpmboot/host/vtpmctl"
)

// DefaultConf is the per-vTPM configuration file.
const DefaultConf = "/etc/vtpmboot/vtpm.conf"

// Conf says how each vTPM is made at first use. The file has one line
// per vTPM that is not the default TPM 2.0:
//
//	# comment
//	6b1d6d0e-2e3b-4f7a-9c1e-0a5b8f3e2d11 tpm=1.2
//
// tpm=2.0 is accepted too. Unknown keys and malformed lines are errors
// naming the line, not ignored.
type Conf struct {
	TPM12 map[string]bool
}

// ReadConf reads path; a missing file is the empty configuration.
func ReadConf(path string) (*Conf, error) {
	c := &Conf{TPM12: map[string]bool{}}
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if !vtpmctl.ValidUUID(f[0]) {
			return nil, fmt.Errorf("%s:%d: %q is not a lower-case vTPM uuid", path, n, f[0])
		}
		for _, kv := range f[1:] {
			switch kv {
			case "tpm=1.2":
				c.TPM12[f[0]] = true
			case "tpm=2.0":
				c.TPM12[f[0]] = false
			default:
				return nil, fmt.Errorf("%s:%d: unknown setting %q (tpm=1.2 or tpm=2.0)", path, n, kv)
			}
		}
	}
	return c, sc.Err()
}
