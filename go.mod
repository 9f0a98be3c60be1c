module github.com/vtpmboot/vtpmboot

go 1.26.8

require (
	github.com/cavaliergopher/cpio v1.0.1
	github.com/google/go-eventlog v0.0.2
	github.com/google/go-tpm v0.9.8
	golang.org/x/sys v0.49.0
)

require (
	github.com/google/go-cmp v0.7.0 // indirect
	google.golang.org/protobuf v1.34.2 // indirect
)
