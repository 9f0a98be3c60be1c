package main

import sim "github.com/vtpmboot/vtpmboot/host/pcrsim"

func cmdPolicy(args []string, o sim.IO) (int, error) {
	var c sim.PolicyConfig
	f := newFlags(o, policyHelp)
	f.bindInput(&c.Input)
	f.BoolVar(&c.AllEntries, "all-entries", false, "with --root/--disk: allow every entry of the configuration the stub uses")
	f.Var((*listFlag)(&c.XLConfigs), "xl-config", "allow every guest of xl domU config `FILE` or DIR; repeatable")
	f.Var((*listFlag)(&c.Expected), "expected", "allow every prediction in `FILE` (pcrsim predict --format json, --xl-config json or jsonl); repeatable")
	f.StringVar(&c.PCRs, "pcrs", "4,5", "the PCR `SELECTION`, e.g. 4,5 or 0,4,5,7")
	f.StringVar(&c.Format, "format", "text", "output `FORMAT`: text, json, tpm2-policy, tpm2-pcrs, cryptenroll, keylime or pcrlock")
	f.StringVar(&c.PolicyBank, "policy-bank", "", "the `BANK` of tpm2-policy, tpm2-pcrs, cryptenroll and keylime (default sha256 if predicted, else the only bank)")
	f.StringVar(&c.PolicyAlg, "policy-alg", "sha256", "the policy session's hash `ALG` (the sealed object's nameAlg)")
	f.StringVar(&c.ORMode, "policy-or", "tree", "more than 8 allowed values: `MODE` tree (a tree of PolicyORs) or flat (refuse)")
	f.StringVar(&c.OutputDir, "output-dir", "", "with tpm2-pcrs or pcrlock: write one file per allowed value into `DIR`")
	var err error
	if c.Given, err = f.parse(args); err != nil {
		return 0, err
	}
	return sim.Policy(c, o)
}
