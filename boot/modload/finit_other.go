//go:build !linux

package modload

import "errors"

func finitModule(string) (bool, error) { return false, errors.New("kernel modules need Linux") }
