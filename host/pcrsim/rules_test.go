package pcrsim

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func testIO() (IO, *bytes.Buffer) {
	var out bytes.Buffer
	return IO{Name: "pcrsim test", Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out}, &out
}

// The flags refused with --xl-config are one list: predict refuses each
// before any config is read, and policy refuses --entry (the one that is
// not a source of predictions itself, which policy's own rule refuses
// first) with the same words.
func TestXLRefusalsAreOneList(t *testing.T) {
	policyErr := func(flag string) error {
		in := Input{XLConfigs: []string{"/nonexistent"}, Given: map[string]bool{"xl-config": true, flag: true}}
		o, _ := testIO()
		_, err := Policy(PolicyConfig{Input: in, PCRs: "4,5", Format: "text", PolicyAlg: "sha256", ORMode: "tree"}, o)
		return err
	}
	for _, flag := range []string{"kernel", "initrd", "cmdline", "root", "disk", "entry", "list", "log-format", "tpm", "eventlog"} {
		in := Input{XLConfigs: []string{"/nonexistent"}, Given: map[string]bool{"xl-config": true, flag: true}}
		o, _ := testIO()
		_, err := Predict(PredictConfig{Input: in}, o)
		var ae *ArgError
		if !errors.As(err, &ae) || ae.Arg != "--"+flag || !strings.Contains(err.Error(), "cannot be combined with --xl-config") {
			t.Errorf("predict --xl-config --%s: %v", flag, err)
		}
		if flag == "entry" {
			if perr := policyErr(flag); perr == nil || perr.Error() != err.Error() {
				t.Errorf("--entry: predict says %v, policy %v", err, perr)
			}
		}
	}
}

// check names the first broken rule only.
func TestCheckFirstRule(t *testing.T) {
	in := Input{Given: map[string]bool{"cmdline": true, "entry": true}}
	err := check(in.inputRules())
	var ae *ArgError
	if !errors.As(err, &ae) || ae.Arg != "--entry" {
		t.Fatalf("err %v, want the --entry rule (the first that holds)", err)
	}
	if err := check([]rule{{}, in.refuse([]string{"root"}, true, "x")}); err != nil {
		t.Errorf("no rule holds, got %v", err)
	}
}

// verify --current predicts the running system without pretending the
// user gave --root: Given stays what the command line said.
func TestRunningIsNotAFlag(t *testing.T) {
	in := Input{Given: map[string]bool{}, running: true}
	if !in.fromGuest() || !in.liveRoot() || in.given("root") || in.guestArg() != "--root" {
		t.Errorf("running input: fromGuest %v liveRoot %v given(root) %v", in.fromGuest(), in.liveRoot(), in.given("root"))
	}
}
