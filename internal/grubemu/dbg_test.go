package grubemu

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestDbg(t *testing.T) {
	for _, c := range corpus(t) {
		if !strings.HasSuffix(c.name, "mkconfig-timeout-hidden") {
			continue
		}
		st := time.Now()
		c.s.Probes = []string{""}
		_, err := Run(context.Background(), []Script{c.s})
		t.Logf("%v %v", time.Since(st), err)
	}
}
