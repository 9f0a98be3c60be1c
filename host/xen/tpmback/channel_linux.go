//go:build linux

package tpmback

import (
	"errors"
	"fmt"

	"github.com/vtpmboot/vtpmboot/host/xen/evtchn"
	"github.com/vtpmboot/vtpmboot/host/xen/gnttab"
)

// XenChannel maps the frontend's page with gntdev and binds its event
// channel with evtchn: Backend.Connect for a real dom0.
func XenChannel(frontendID, ringRef, port uint32) (Channel, error) {
	m, err := gnttab.Map(frontendID, ringRef)
	if err != nil {
		return nil, err
	}
	ev, err := evtchn.Open()
	if err != nil {
		m.Close()
		return nil, err
	}
	local, err := ev.BindInterdomain(frontendID, port)
	if err != nil {
		ev.Close()
		m.Close()
		return nil, err
	}
	return &xenChannel{m: m, ev: ev, port: local}, nil
}

type xenChannel struct {
	m    *gnttab.Mapping
	ev   *evtchn.Dev
	port uint32
}

func (c *xenChannel) Page() []byte  { return c.m.Page }
func (c *xenChannel) Notify() error { return c.ev.Notify(c.port) }

func (c *xenChannel) Wait() error {
	for {
		p, err := c.ev.Wait()
		if errors.Is(err, evtchn.ErrClosed) {
			return ErrClosed
		}
		if err != nil {
			return err
		}
		if err := c.ev.Unmask(p); err != nil {
			return err
		}
		if p == c.port {
			return nil
		}
	}
}

// Interrupt closes the evtchn device, which unbinds the port and ends a
// blocked Wait.
func (c *xenChannel) Interrupt() { c.ev.Close() }

func (c *xenChannel) Close() error {
	if err := c.m.Close(); err != nil {
		return fmt.Errorf("unmap ring: %w", err)
	}
	return nil
}
