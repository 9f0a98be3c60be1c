package vtpmctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Handler does what a request asks. Errors made with Errorf keep their
// code; others are reported as CodeInternal.
type Handler interface {
	Boot(uuid string, domid uint32, ms []Measurement) (reset bool, err error)
	PCRs(uuid string, pcrs []int) (version string, values map[string]map[string]string, err error)
	PutLog(uuid string, domid uint32, log []byte) error
	GetLog(uuid string) ([]byte, error)
	Status(uuid string) ([]Binding, error)
}

// Server answers control requests from root.
type Server struct {
	Handler Handler
	Logf    func(format string, args ...any)
	// AllowUID is the one peer uid served (0: root). Tests running as
	// root change it to check the refusal.
	AllowUID uint32
	// Timeout bounds reading a request and writing its answer.
	Timeout time.Duration
}

// Listen makes the socket: its directory 0700, the socket 0600, any
// stale socket file removed (a previous vtpmback's; a live one would
// still be listening, which Listen checks first).
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another vtpmback is listening", path)
	}
	os.Remove(path)
	// The umask makes the socket 0600 from its creation: no window in
	// which a non-root process could connect.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return l, nil
}

// Serve answers connections until ctx ends or l fails.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("control socket: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(c)
		}()
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	c.SetDeadline(time.Now().Add(timeout))
	rsp := s.answer(c)
	b, _ := json.Marshal(rsp)
	c.Write(b)
	// Closing with unread bytes makes the peer's read fail with
	// ECONNRESET before it sees the answer (a refusal is sent before the
	// request is read): half-close, then let the client finish, bounded.
	if uc, ok := c.(*net.UnixConn); ok {
		uc.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(c, MaxRequest+1))
}

func (s *Server) answer(c net.Conn) *Response {
	uid, pid, err := peerCred(c)
	if err != nil {
		s.logf("control: %v", err)
		return &Response{Error: Errorf(CodeDenied, "cannot tell who is asking: %v", err)}
	}
	if uid != s.AllowUID {
		s.logf("control: refused a request from uid %d (pid %d): only uid %d may ask", uid, pid, s.AllowUID)
		return &Response{Error: Errorf(CodeDenied, "uid %d may not use vtpmback's control socket", uid)}
	}
	b, err := io.ReadAll(io.LimitReader(c, MaxRequest+1))
	if err != nil {
		return &Response{Error: Errorf(CodeBadRequest, "read request: %v", err)}
	}
	if len(b) > MaxRequest {
		return &Response{Error: Errorf(CodeBadRequest, "request larger than %d bytes", MaxRequest)}
	}
	var req Request
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return &Response{Error: Errorf(CodeBadRequest, "request is not vtpmctl JSON: %v", err)}
	}
	if err := req.Check(); err != nil {
		return &Response{Error: asError(err)}
	}
	rsp, err := s.dispatch(&req)
	if err != nil {
		e := asError(err)
		s.logf("control: %s %s: %s", req.Op, req.UUID, e.Message)
		return &Response{Error: e}
	}
	return rsp
}

func (s *Server) dispatch(r *Request) (*Response, error) {
	h := s.Handler
	switch r.Op {
	case OpBoot:
		reset, err := h.Boot(r.UUID, *r.Domid, r.Measurements)
		return &Response{Reset: reset}, err
	case OpPCRs:
		v, p, err := h.PCRs(r.UUID, r.PCRs)
		return &Response{Version: v, PCRs: p}, err
	case OpPutLog:
		return &Response{}, h.PutLog(r.UUID, *r.Domid, r.Log)
	case OpGetLog:
		l, err := h.GetLog(r.UUID)
		return &Response{Log: l}, err
	case OpStatus:
		b, err := h.Status(r.UUID)
		return &Response{Bindings: b}, err
	}
	return nil, errors.New("unreachable: Check admits no other op")
}

func peerCred(c net.Conn) (uid uint32, pid int32, err error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, 0, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if cerr != nil {
		return 0, 0, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return cred.Uid, cred.Pid, nil
}
