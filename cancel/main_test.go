package cancel_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The stress test and the cancel-racing benchmark start goroutines; none may
// outlive its test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
