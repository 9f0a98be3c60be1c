package vtpmctl

import (
	"encoding/json"
	"io"
	"net"
)

func rawDo(sock string, req *Request) (*Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	return rawBytes(sock, b)
}

func rawBytes(sock string, b []byte) (*Response, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	go func() { c.Write(b); c.(*net.UnixConn).CloseWrite() }()
	out, err := io.ReadAll(c)
	if err != nil {
		return nil, err
	}
	var rsp Response
	return &rsp, json.Unmarshal(out, &rsp)
}
