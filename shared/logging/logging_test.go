package logging

import "testing"

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
