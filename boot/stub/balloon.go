package stub

import (
	"errors"
	"fmt"
)

// Under Xen HVM the kernel's balloon driver hands memory back to Xen
// whenever the toolstack's target (xenstore memory/target) is below what
// the guest holds, and xl sets the target below the domain's allocation
// (by the video RAM: 512 MiB guests were seen going to 504 MiB while the
// stub ran). The pages it hands back stay "System RAM" to the kernel, so
// kexec_file_load may choose them as destinations; after the soft reset
// relocate_kernel's copies into them go nowhere, purgatory reads 0xff,
// finds the segments' SHA-256 changed, and spins: the measured kernel
// never runs. Measured under Xen 4.17 here (docs/xen.md, "kexec after the
// soft reset"). So the stub asks for everything back first, and kexecs
// only once nothing is ballooned out.

// holdBalloon, first thing under Xen HVM, sets the balloon target to all
// the guest had, so the driver stops giving pages away and starts taking
// back what it gave. xenType is XenGuestType's answer. It reports whether
// there is a balloon to wait for.
func (r *run) holdBalloon(xenType string) (bool, error) {
	if xenType != "HVM" {
		return false, nil
	}
	b, ok, err := r.sys.XenBalloon()
	if err != nil {
		return false, fatal("Xen balloon driver", err)
	}
	if !ok {
		return false, nil
	}
	if err := r.takeBalloonBack(b); err != nil {
		return false, err
	}
	if b.Out > 0 {
		r.printf("xen balloon: %d KiB handed back to Xen; taking it back before kexec", b.Out)
	}
	return true, nil
}

// takeBalloonBack sets the driver's target to all the guest had.
// Current+Out is what the guest started with: asking for more would make
// the driver hot-add memory instead.
func (r *run) takeBalloonBack(b Balloon) error {
	if err := r.sys.SetXenBalloonTarget(b.Current + b.Out); err != nil {
		return fatal("Xen balloon driver", fmt.Errorf("set target to %d KiB: %w", b.Current+b.Out, err))
	}
	return nil
}

// errBalloonOut is the refusal when Xen does not give the pages back.
var errBalloonOut = errors.New("guest memory is still ballooned out to Xen: kexec could copy the kernel into pages that are not there, and the measured kernel would never run")

// waitBalloon waits, within vtpmboot.timeout, until no page is ballooned
// out.
func (r *run) waitBalloon() error {
	deadline := r.sys.Now().Add(r.opts.Timeout)
	for {
		b, ok, err := r.sys.XenBalloon()
		if err != nil {
			return fatal("Xen balloon driver", err)
		}
		if !ok || b.Out == 0 {
			return nil
		}
		if !r.sys.Now().Before(deadline) {
			return fatal("Xen balloon driver", fmt.Errorf("%w (%d KiB still out after %v: Xen did not give them back; a guest with maxmem above memory needs that much free host memory for the stub)", errBalloonOut, b.Out, r.opts.Timeout))
		}
		r.sys.Sleep(pollInterval)
	}
}

// reloadIfBallooned runs after kexec_file_load chose the destinations:
// the driver's first look at xenstore memory/target can come after
// holdBalloon (its watch fires asynchronously, and on that first firing
// it takes the target it was given as its baseline and still gives the
// difference away), so pages may have gone out while the stub measured.
// Then the loaded image may point into them: take them back and load the
// same sealed images again, so nothing is re-read or re-measured. A
// second miss is fatal: the measured kernel must not be lost in the soft
// reset.
func (r *run) reloadIfBallooned(load func() error) error {
	for attempt := 0; ; attempt++ {
		b, ok, err := r.sys.XenBalloon()
		if err != nil {
			return fatal("Xen balloon driver", err)
		}
		if !ok || b.Out == 0 {
			return nil
		}
		if attempt > 0 {
			return fatal("Xen balloon driver", fmt.Errorf("%w (%d KiB went out again after kexec was reloaded)", errBalloonOut, b.Out))
		}
		r.printf("xen balloon: %d KiB went out to Xen after the stub took it back; taking it back and loading kexec again", b.Out)
		if err := r.takeBalloonBack(b); err != nil {
			return err
		}
		if err := r.waitBalloon(); err != nil {
			return err
		}
		if err := load(); err != nil {
			return err
		}
	}
}
