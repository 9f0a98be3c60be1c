package vtpmctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// Client asks vtpmback over its control socket.
type Client struct {
	Socket  string        // "" means DefaultSocket
	Timeout time.Duration // one request; 0 means 2 minutes
}

// Do sends one request and returns the response; a refused or failed
// request is an *Error (errors.Is with the Err* sentinels).
func (c *Client) Do(req *Request) (*Response, error) {
	if err := req.Check(); err != nil {
		return nil, err
	}
	sock := c.Socket
	if sock == "" {
		sock = DefaultSocket
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("vtpmback control socket: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	// A refusal (wrong uid) is answered before the request is read; the
	// answer is still there to read when the write fails.
	_, werr := conn.Write(b)
	if werr == nil {
		conn.(*net.UnixConn).CloseWrite()
	}
	out, err := io.ReadAll(io.LimitReader(conn, MaxResponse+1))
	if err != nil || len(out) == 0 && werr != nil {
		if werr != nil {
			err = werr
		}
		return nil, fmt.Errorf("vtpmback %s: %w", req.Op, err)
	}
	if len(out) > MaxResponse {
		return nil, fmt.Errorf("vtpmback %s: answer larger than %d bytes", req.Op, MaxResponse)
	}
	var rsp Response
	if err := json.Unmarshal(out, &rsp); err != nil {
		return nil, fmt.Errorf("vtpmback %s: answer is not vtpmctl JSON: %w", req.Op, err)
	}
	if rsp.Error != nil {
		return nil, rsp.Error
	}
	return &rsp, nil
}

// Boot says a boot of domid with vTPM uuid is starting: vtpmback resets
// the TPM (unless this boot was reset already) and extends ms in order.
func (c *Client) Boot(uuid string, domid uint32, ms []Measurement) (reset bool, err error) {
	rsp, err := c.Do(&Request{Op: OpBoot, UUID: uuid, Domid: &domid, Measurements: ms})
	if err != nil {
		return false, err
	}
	return rsp.Reset, nil
}

// PCRs reads PCRs (nil: 0..23) in every bank.
func (c *Client) PCRs(uuid string, pcrs []int) (*Response, error) {
	return c.Do(&Request{Op: OpPCRs, UUID: uuid, PCRs: pcrs})
}

// PutLog stores the event log of domid's current boot.
func (c *Client) PutLog(uuid string, domid uint32, log []byte) error {
	if log == nil {
		log = []byte{}
	}
	_, err := c.Do(&Request{Op: OpPutLog, UUID: uuid, Domid: &domid, Log: log})
	return err
}

// GetLog fetches the current boot's event log.
func (c *Client) GetLog(uuid string) ([]byte, error) {
	rsp, err := c.Do(&Request{Op: OpGetLog, UUID: uuid})
	if err != nil {
		return nil, err
	}
	return rsp.Log, nil
}

// Status lists vtpmback's bindings (uuid "": all).
func (c *Client) Status(uuid string) ([]Binding, error) {
	rsp, err := c.Do(&Request{Op: OpStatus, UUID: uuid})
	if err != nil {
		return nil, err
	}
	return rsp.Bindings, nil
}
