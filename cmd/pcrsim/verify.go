package main

import sim "github.com/vtpmboot/vtpmboot/host/pcrsim"

func cmdVerify(args []string, o sim.IO) (int, error) {
	var c sim.VerifyConfig
	f := newFlags(o, verifyHelp)
	f.bindInput(&c.Input)
	f.Func("expected", "prediction `FILE` in pcrsim JSON", func(v string) error { c.Expected = []string{v}; return nil })
	f.StringVar(&c.Actual, "actual", "", "readings `FILE` ('-' for stdin)")
	f.StringVar(&c.ActualFormat, "actual-format", "", "force the readings `FORMAT`: yaml, sysfs or json")
	f.BoolVar(&c.Current, "current", false, "read this machine's TPM and, without other inputs, predict what booted it (--root / with /proc/cmdline)")
	f.StringVar(&c.TPMDevice, "tpm-device", "", "with --current: the TPM `DEVICE` (default /dev/tpmrm0, else /dev/tpm0; or swtpm:unix:PATH)")
	f.Var((*listFlag)(&c.EventLogs), "eventlog", "TCG event `LOG` to replay against the readings; repeat to join logs in boot order")
	var err error
	if c.Given, err = f.parse(args); err != nil {
		return 0, err
	}
	return sim.Verify(c, o)
}
