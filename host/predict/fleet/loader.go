package fleet

import (
	"fmt"
	"strings"

	"github.com/vtpmboot/vtpmboot/boot/measure"
	"github.com/vtpmboot/vtpmboot/host/loader"
	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/host/xl"
)

// predictLoader predicts a PV or PVH guest whose bootloader= is
// vtpmboot-loader (host/loader): the arguments libxl would pass it, parsed
// by the loader's parser; the first disk of disk= (libxl hands the
// bootloader d_config->disks[0], libxl_create.c initiate_domain_create)
// read under the loader's name for it; the loader's command line rule.
// Nothing measures before the loader (it resets the vTPM), so PCRs start
// at zero whatever --pcr-init says for stub guests.
func predictLoader(c *xl.Config, name string, o Options, h measure.Hasher) Result {
	fail := func(err error) Result {
		return Result{Doc: predict.GuestDoc{Guest: name, Config: c.File, Error: err.Error()}, Err: err}
	}
	typ, err := c.Type()
	if err != nil {
		return fail(err)
	}
	if typ == xl.TypeHVM {
		return fail(fmt.Errorf("%s: type hvm: libxl runs no bootloader= for HVM guests (libxl__bootloader_run skips it); use the stub", c.File))
	}
	args, ok := c.List("bootloader_args")
	if !ok {
		// xl also takes a string, split at spaces (deprecated).
		if s, isStr := c.String("bootloader_args"); isStr {
			args = strings.Fields(s)
		}
	}
	ds, err := c.Disks()
	if err != nil {
		return fail(err)
	}
	if len(ds) == 0 {
		return fail(fmt.Errorf("%s: %w (libxl runs a bootloader on the first disk)", c.File, xl.ErrNoDisk))
	}
	d := ds[0]
	if err := d.Check(); err != nil {
		return fail(fmt.Errorf("%s: %w", c.File, err))
	}
	cmdline, _, err := c.Cmdline()
	if err != nil {
		return fail(err)
	}
	a, err := loader.ArgsFor(cmdline, args, d.Path)
	if err != nil {
		return fail(fmt.Errorf("%s: bootloader_args: %w", c.File, err))
	}
	var notes []string
	for _, w := range a.Warnings {
		notes = append(notes, "bootloader_args: "+w)
	}
	if d.Linux != "" && d.Linux != a.VDev {
		notes = append(notes, fmt.Sprintf("the loader calls the boot disk %s (--vdev=), the guest %s", a.VDev, d.Linux))
	}
	vtpms, err := c.VTPMs()
	if err != nil {
		return fail(err)
	}
	if a.VTPMUUID != "" {
		for _, v := range vtpms {
			if v.UUID != "" && !strings.EqualFold(v.UUID, a.VTPMUUID) {
				return fail(fmt.Errorf("%s: bootloader_args --vtpm-uuid=%s is not the guest's vtpm= uuid %s: the loader would measure into another guest's vTPM", c.File, a.VTPMUUID, v.UUID))
			}
		}
	} else {
		notes = append(notes, "bootloader_args has no --vtpm-uuid=: the loader measures nothing unless vtpmboot.tpm=optional lets it boot unmeasured")
	}
	if len(o.Init) > 0 {
		notes = append(notes, "--pcr-init ignored: the loader's vTPM starts from zero")
	}
	g := &predict.Guest{}
	defer g.Close()
	if err := g.AddDisk(0, predict.DiskSpec{Path: d.Path, Linux: a.VDev}); err != nil {
		return fail(fmt.Errorf("%s: disk %s: %w", c.File, d.Vdev, err))
	}
	g.Restrict(a.Opts.Disk)
	if a.Opts.Disk != "" && len(g.Volumes) == 0 {
		return fail(fmt.Errorf("%s: vtpmboot.disk=%s matches no partition (the loader sees %s)", c.File, a.Opts.Disk, strings.Join(g.DeviceNames(), ", ")))
	}
	sel := g.Choose(a.Opts.Entry)
	if sel.Err != nil {
		return fail(fmt.Errorf("%s: %w", c.File, sel.Err))
	}
	final, err := loader.FinalCmdline(sel.Choice.Entry.Cmdline, a.Extra)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", c.File, err))
	}
	notes = append(notes, predict.NoteStrings(sel)...)
	in := g.Inputs(sel.Choice)
	in.Cmdline = final
	r, err := predict.Run(predict.Options{Banks: o.Banks, Inputs: in, Hasher: h})
	if err != nil {
		return fail(fmt.Errorf("%s: %w", c.File, err))
	}
	doc := predict.Doc(sel, r, notes)
	doc.Guest, doc.Config = name, c.File
	return Result{Doc: doc, Report: r}
}
