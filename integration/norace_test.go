//go:build !race

package integration_test

// raceEnabled reports whether this test binary was built with -race, in
// which case echod is built with it as well.
const raceEnabled = false
