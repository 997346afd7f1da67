package testutil

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyNoLeaks is for TestMain: it fails the package when goroutines outlive
// its tests.
func VerifyNoLeaks(m *testing.M) { goleak.VerifyTestMain(m) }
