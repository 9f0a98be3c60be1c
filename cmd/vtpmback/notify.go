package main

import (
	"net"
	"os"
)

// notifyReady tells systemd the service is up (Type=notify): guests
// that xendomains starts next (the unit is Before=xendomains.service)
// find vtpmback watching, so xl's wait for the backend's InitWait is
// short. sd_notify(3)'s protocol: "READY=1" as one datagram to
// $NOTIFY_SOCKET; '@' is an abstract socket. No socket, nothing to do.
func notifyReady() error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte("READY=1"))
	return err
}
