package main

import (
	sim "github.com/vtpmboot/vtpmboot/host/pcrsim"
	"github.com/vtpmboot/vtpmboot/host/predict"
	"github.com/vtpmboot/vtpmboot/host/predict/fleet"
)

func cmdPredict(args []string, o sim.IO) (int, error) {
	var c sim.PredictConfig
	f := newFlags(o, predictHelp)
	f.bindInput(&c.Input)
	f.StringVar(&c.Format, "format", "", "output `FORMAT`: text, json or eventlog; with --xl-config json (default), jsonl or table")
	f.StringVar(&c.LogFormat, "log-format", "", "event log `LAYOUT` for --format eventlog: sha1 or crypto-agile (default: the layout --tpm writes)")
	f.StringVar(&c.TPM, "tpm", "", "for --format eventlog: the TPM the guest has, `1.2` (Xen's vtpm-stubdom: a SHA-1 log) or 2.0 (a crypto-agile log, whatever its banks)")
	f.BoolVar(&c.List, "list", false, "with --root/--disk: list every configuration and entry found and which one boots, instead of predicting")
	f.Var((*listFlag)(&c.XLConfigs), "xl-config", "xl domU config `FILE` or DIR (every config in it); repeatable")
	f.BoolVar(&c.NoCache, "no-cache", false, "with --xl-config: hash every guest's files afresh instead of once per distinct file")
	f.IntVar(&c.Workers, "workers", 0, "with --xl-config: guests predicted at once (`N`, default GOMAXPROCS)")
	f.DurationVar(&c.GuestTimeout, "guest-timeout", fleet.DefaultGuestTimeout, "with --xl-config: give up on a guest whose prediction takes longer than `D` (it fails, the others go on)")
	f.StringVar(&c.EventLog, "eventlog", "", "take PCR 4 and 5 starting values from the firmware events of this TCG event `LOG` (default with --root /: "+predict.FirmwareLogPath+" when it exists)")
	var err error
	if c.Given, err = f.parse(args); err != nil {
		return 0, err
	}
	return sim.Predict(c, o)
}
