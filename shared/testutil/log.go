package testutil

import (
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Logger returns a logger that records every entry in memory, and prints the
// entries, each prefixed with name, if the test has failed by its cleanup.
func Logger(t testing.TB, name string) (*zap.Logger, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range logs.All() {
				t.Logf("%s %s %s %v", name, e.Level, e.Message, e.ContextMap())
			}
		}
	})
	return zap.New(core), logs
}

// Logged reports whether some entry has message msg and a field key whose
// value contains want.
func Logged(logs *observer.ObservedLogs, msg, key, want string) bool {
	for _, e := range logs.FilterMessage(msg).All() {
		if v, ok := e.ContextMap()[key]; ok && strings.Contains(fmt.Sprint(v), want) {
			return true
		}
	}
	return false
}
