package tpmfront

import (
	"encoding/binary"
	"fmt"
	"github.com/vtpmboot/vtpmboot/pcrbank"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// Open opens the Target that spec names:
//
//	"" or "auto"                  the system TPM (Linux: /dev/tpmrm0, else /dev/tpm0)
//	"/dev/tpm0", any path         a TPM character device (or a Unix socket)
//	"swtpm:unix:/path/srv.sock"   an swtpm --server type=unixio socket
//	"swtpm:tcp:127.0.0.1:2321"    an swtpm --server type=tcp socket
//
// TPM 1.2 or 2.0 is detected; a TPM 2.0's banks are read and checked here,
// so a TPM the stub cannot measure into fully is refused before anything
// is extended.
func Open(spec string) (pcrbank.Target, error) {
	switch {
	case spec == "" || spec == "auto":
		path, err := autoDevice()
		if err != nil {
			return nil, err
		}
		return OpenDevice(path)
	case strings.HasPrefix(spec, "swtpm:unix:"):
		return Dial("unix", strings.TrimPrefix(spec, "swtpm:unix:"), DefaultTimeout)
	case strings.HasPrefix(spec, "swtpm:tcp:"):
		return Dial("tcp", strings.TrimPrefix(spec, "swtpm:tcp:"), DefaultTimeout)
	case strings.HasPrefix(spec, "swtpm:"):
		return nil, fmt.Errorf("TPM %q: want swtpm:unix:PATH or swtpm:tcp:HOST:PORT", spec)
	}
	return OpenDevice(spec)
}

// Dial connects to a TPM on a socket (swtpm's server socket). Every command
// must complete within timeout (0: no limit), so a TPM that stops
// answering gives an error instead of a hang.
func Dial(network, addr string, timeout time.Duration) (pcrbank.Target, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial(network, addr)
	if err != nil {
		return nil, fmt.Errorf("connect to TPM at %s:%s: %w", network, addr, err)
	}
	t, err := open(c, timeout, 0)
	if err != nil {
		return nil, fmt.Errorf("TPM at %s:%s: %w", network, addr, err)
	}
	return t, nil
}

// OpenDevice opens a TPM character device such as /dev/tpm0 or
// /dev/tpmrm0. A Unix socket path is dialled instead, as go-tpm does.
func OpenDevice(path string) (pcrbank.Target, error) {
	if st, err := os.Stat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		return Dial("unix", path, DefaultTimeout)
	}
	f, err := openDeviceFile(path)
	if err != nil {
		return nil, fmt.Errorf("open TPM %s: %w", path, err)
	}
	t, err := open(f, DefaultTimeout, deviceVersion(path))
	if err != nil {
		return nil, fmt.Errorf("TPM %s: %w", path, err)
	}
	return t, nil
}

// OpenReadWriter talks to a TPM over rw, detecting its version. The Target
// owns rw and closes it. If rw has SetDeadline (a net.Conn), commands time
// out after DefaultTimeout.
func OpenReadWriter(rw io.ReadWriteCloser) (pcrbank.Target, error) {
	return open(rw, DefaultTimeout, 0)
}

// open wraps rw; known is the version if the OS already told us (0: probe).
func open(rw io.ReadWriteCloser, timeout time.Duration, known pcrbank.Version) (pcrbank.Target, error) {
	c := newConn(rw, timeout)
	v := known
	if v == 0 {
		var err error
		if v, err = probe(c); err != nil {
			c.Close()
			return nil, err
		}
	}
	switch v {
	case pcrbank.Version12:
		return &tpm12{c: c}, nil
	case pcrbank.Version20:
		t := &tpm20{c: c}
		if err := t.loadBanks(); err != nil {
			c.Close()
			return nil, err
		}
		return t, nil
	}
	c.Close()
	return nil, fmt.Errorf("unsupported TPM version %v", v)
}

// probeCmd is TPM2_GetCapability(TPM_CAP_PCRS). A TPM 2.0 answers with a
// 2.0 tag whatever its state; a TPM 1.2 does not know tag 0x8001 and
// answers TPM_BADTAG under its own response tag.
var probeCmd = []byte{
	0x80, 0x01, // TPM_ST_NO_SESSIONS
	0, 0, 0, 22, // size
	0, 0, 0x01, 0x7a, // TPM_CC_GetCapability
	0, 0, 0, 5, // TPM_CAP_PCRS
	0, 0, 0, 0, // property
	0, 0, 0, 1, // count
}

func probe(c *conn) (pcrbank.Version, error) {
	rsp, err := c.Send(probeCmd)
	if err != nil {
		return 0, fmt.Errorf("probe TPM version: %w", err)
	}
	switch tag := binary.BigEndian.Uint16(rsp); tag {
	case tag20NoSessions, tag20Sessions:
		return pcrbank.Version20, nil
	case tag12RspCommand, tag12RspAuth1, tag12RspAuth2:
		return pcrbank.Version12, nil
	default:
		return 0, fmt.Errorf("probe TPM version: response tag 0x%04x is neither TPM 1.2 nor 2.0", tag)
	}
}
