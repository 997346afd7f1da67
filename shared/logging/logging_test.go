package logging

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		level, format string
		ok            bool
	}{
		{"info", "console", true},
		{"DEBUG", "json", true},
		{"warn", "", true},
		{"error", "JSON", true},
		{"verbose", "console", false},
		{"info", "xml", false},
	} {
		log, err := New(tc.level, tc.format)
		if (err == nil) != tc.ok {
			t.Errorf("New(%q, %q) error = %v, want ok=%v", tc.level, tc.format, err, tc.ok)
		}
		if err == nil && log == nil {
			t.Errorf("New(%q, %q) returned a nil logger", tc.level, tc.format)
		}
	}
}

func TestFloodSamplesPerMessage(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	log := Flood(zap.New(core))
	for range 1000 {
		log.Warn("tunnel refused")
	}
	log.Warn("another line")
	// Within one second: the first FloodFirst, then every FloodThereafter-th.
	want := FloodFirst + (1000-FloodFirst)/FloodThereafter
	if got := logs.FilterMessage("tunnel refused").Len(); got < want || got > want+FloodFirst {
		t.Errorf("%d of 1000 identical lines written, want about %d", got, want)
	}
	if logs.FilterMessage("another line").Len() != 1 {
		t.Error("a different message was suppressed with the flood")
	}
}
