//go:build !linux

// Package load is echoload's engine; it uses Linux's timerfd and /proc and
// builds only there.
package load
