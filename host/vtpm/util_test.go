package vtpm

import (
	"fmt"
	"strconv"
)

func itoa(d uint32) string              { return strconv.FormatUint(uint64(d), 10) }
func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }
