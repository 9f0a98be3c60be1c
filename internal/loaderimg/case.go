package loaderimg

import "github.com/vtpmboot/vtpmboot/internal/loadercase"

// The corpus format lives in internal/loadercase, which the parser tests
// import without this package's QEMU harness; these names keep the boot
// side reading as before.
type (
	Loader = loadercase.Loader
	Case   = loadercase.Case
)

const (
	GRUB2           = loadercase.GRUB2
	Syslinux        = loadercase.Syslinux
	GRUBLegacy      = loadercase.GRUBLegacy
	DefaultDeadline = loadercase.DefaultDeadline
)

var (
	ParseCase     = loadercase.ParseCase
	LoadCorpus    = loadercase.LoadCorpus
	InitrdContent = loadercase.InitrdContent
)
