//go:build !amd64

package integration_test

// Only amd64 has a syscall table here; the profile tests skip elsewhere.
const auditArch = 0

var syscallNumbers map[string]uintptr
