package main

import (
	"bufio"
	"io"
	"os"

	"github.com/vtpmboot/vtpmboot/boot/predict"
	"github.com/vtpmboot/vtpmboot/tpmfront/pcrfile"
)

const verifyHelp = `usage: pcrsim verify (--expected FILE | --kernel FILE [--initrd FILE]... --cmdline STRING
                     | --root DIR [--entry SEL] | --disk IMAGE... [--entry SEL])
                     [--pcr-init PCR:BANK=HEX]... [--bank BANKS]
                     --actual FILE|- [--actual-format yaml|sysfs|json]

Compares a prediction with actual PCR readings and prints one row per PCR
and bank: PCR, bank, result, expected, actual.

The prediction is either pcrsim JSON (--expected, from 'pcrsim predict
--format json') or computed from the same flags as 'pcrsim predict'.

The readings (--actual, '-' for stdin) may be:
  yaml    tpm2_pcrread output, e.g. 'tpm2_pcrread sha1:4,5+sha256:4,5'
  sysfs   a TPM 1.2 /sys/class/tpm/tpm0/pcrs file ("PCR-04: 3A 3F ...")
  json    pcrsim's own JSON
The format is detected unless --actual-format forces it.

Banks: with --bank, every named bank must be in the readings (absent
values fail). Without it, predicted banks the readings lack are listed as
not compared and the rest are checked; at least one bank must be compared.
So a TPM 1.2 sysfs file verifies the sha1 bank of a default prediction.

Exit status: 0 all compared values match, 1 a mismatch or missing value,
2 usage or input error.

Examples:
  tpm2_pcrread sha1:4,5+sha256:4,5 > pcrs.yaml
  pcrsim verify --kernel /boot/vmlinuz --initrd /boot/initrd.img \
      --cmdline "root=/dev/xvda1 ro" --actual pcrs.yaml
  pcrsim predict --kernel vmlinuz --cmdline "" --format json > expected.json
  ssh guest cat /sys/class/tpm/tpm0/pcrs | pcrsim verify --expected expected.json --actual -

Flags:
`

func cmdVerify(name string, args []string, e env) (int, error) {
	var in inputFlags
	fs := newFlagSet(name, verifyHelp, e)
	in.register(fs)
	expectedPath := fs.String("expected", "", "prediction `FILE` in pcrsim JSON")
	actualPath := fs.String("actual", "", "readings `FILE` ('-' for stdin)")
	actualFormat := fs.String("actual-format", "", "force the readings `FORMAT`: yaml, sysfs or json")
	if err := parseFlags(fs, args); err != nil {
		return 0, err
	}
	if *actualPath == "" {
		return 0, argErr("--actual", "required")
	}
	var forced pcrfile.Format
	if *actualFormat != "" {
		f, err := pcrfile.ParseFormat(*actualFormat)
		if err != nil {
			return 0, &argError{arg: "--actual-format", err: err}
		}
		forced = f
	}
	required, err := in.bankList()
	if err != nil {
		return 0, err
	}

	var expected pcrfile.Readings
	switch {
	case *expectedPath != "" && in.any():
		return 0, argErr("--expected", "give either --expected or --kernel/--initrd/--cmdline/--pcr-init, not both")
	case *expectedPath != "":
		if *expectedPath == "-" && *actualPath == "-" {
			return 0, argErr("--expected", "stdin already carries --actual")
		}
		b, err := readInput("--expected", *expectedPath, e.stdin)
		if err != nil {
			return 0, err
		}
		all, err := pcrfile.ParseAs(b, pcrfile.FormatJSON)
		if err != nil {
			return 0, argErr("--expected", "%s: %w", *expectedPath, err)
		}
		expected = all
		if required != nil {
			expected = pcrfile.Readings{}
			for _, a := range required {
				if all[a] == nil {
					return 0, argErr("--bank", "bank %v is not in the prediction %s (it has %v)", a, *expectedPath, all.Algs())
				}
				expected[a] = all[a]
			}
		}
	default:
		o, err := in.options()
		defer in.close()
		if err != nil {
			return 0, err
		}
		r, err := predict.Run(o)
		if err != nil {
			return 0, err
		}
		expected = r.Final
	}

	b, err := readInput("--actual", *actualPath, e.stdin)
	if err != nil {
		return 0, err
	}
	var actual pcrfile.Readings
	if forced != pcrfile.FormatUnknown {
		actual, err = pcrfile.ParseAs(b, forced)
	} else {
		actual, _, err = pcrfile.Parse(b)
	}
	if err != nil {
		return 0, argErr("--actual", "%s: %w", displayName(*actualPath), err)
	}

	c := predict.Compare(expected, actual, required)
	w := bufio.NewWriter(e.stdout)
	if err := c.WriteTable(w); err != nil {
		return 0, err
	}
	if err := w.Flush(); err != nil {
		return 0, argErr("output", "%w", err)
	}
	if !c.OK() {
		return exitMismatch, nil
	}
	return exitOK, nil
}

func displayName(path string) string {
	if path == "-" {
		return "stdin"
	}
	return path
}

// readInput reads a small input file (or stdin for "-"), refusing anything
// larger than any readings file could be so a wrong path (a disk image, a
// device) fails fast instead of filling memory.
func readInput(arg, path string, stdin io.Reader) ([]byte, error) {
	var r io.Reader = stdin
	if path != "-" {
		if err := checkFile(arg, path); err != nil {
			return nil, err
		}
		fh, err := os.Open(path)
		if err != nil {
			return nil, argErr(arg, "%s: %v", path, unwrapPath(err))
		}
		defer fh.Close()
		r = fh
	}
	b, err := io.ReadAll(io.LimitReader(r, pcrfile.MaxSize+1))
	if err != nil {
		return nil, argErr(arg, "%s: %v", displayName(path), unwrapPath(err))
	}
	if len(b) > pcrfile.MaxSize {
		return nil, argErr(arg, "%s: larger than %d bytes, not a readings file", displayName(path), pcrfile.MaxSize)
	}
	return b, nil
}
