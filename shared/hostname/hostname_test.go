package hostname_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/socket-warp/socket-warp/shared/hostname"
)

func TestCheck(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	// 253 bytes: three labels of 63, one of 61 and the dots.
	long := strings.Repeat(label63+".", 3) + label63[2:]
	for _, tc := range []struct {
		host          string
		check, strict error
	}{
		{"db.internal", nil, nil},
		{"DB.Internal.", nil, nil},
		{"my_service", nil, nil},
		{"_sip._tcp.example", nil, nil},
		{"a-b.c-d", nil, nil},
		{label63 + ".example", nil, nil},
		{long, nil, nil},
		{long + ".", nil, nil},
		// The last label: a number to inet_aton, or no letter first.
		{"10.0.0.256", hostname.ErrNumber, hostname.ErrLastLabel},
		{"127.1", hostname.ErrNumber, hostname.ErrLastLabel},
		{"0x7f.1", hostname.ErrNumber, hostname.ErrLastLabel},
		{"db.0x1F", hostname.ErrNumber, hostname.ErrLastLabel},
		{"db.0x", hostname.ErrNumber, hostname.ErrLastLabel},
		{"10.0.0.1a", nil, hostname.ErrLastLabel},
		{"db.1internal", nil, hostname.ErrLastLabel},
		{"1db.internal", nil, nil},
		// Labels.
		{"", hostname.ErrLabels, hostname.ErrLabels},
		{".", hostname.ErrLabels, hostname.ErrLabels},
		{"db..internal", hostname.ErrLabels, hostname.ErrLabels},
		{"db.internal..", hostname.ErrLabels, hostname.ErrLabels},
		{".db", hostname.ErrLabels, hostname.ErrLabels},
		{"-db.internal", hostname.ErrLabels, hostname.ErrLabels},
		{"db-.internal", hostname.ErrLabels, hostname.ErrLabels},
		{label63 + "a.example", hostname.ErrLabels, hostname.ErrLabels},
		{"db internal", hostname.ErrLabels, hostname.ErrLabels},
		{"bücher.example", hostname.ErrLabels, hostname.ErrLabels},
		{"db\x00.internal", hostname.ErrLabels, hostname.ErrLabels},
		{"db*.internal", hostname.ErrLabels, hostname.ErrLabels},
		{"db:22", hostname.ErrLabels, hostname.ErrLabels},
		{"\xff.example", hostname.ErrLabels, hostname.ErrLabels},
		{long + "c", hostname.ErrTooLong, hostname.ErrTooLong},
	} {
		if err := hostname.Check(tc.host); !errors.Is(err, tc.check) {
			t.Errorf("Check(%q) = %v, want %v", tc.host, err, tc.check)
		}
		if err := hostname.CheckStrict(tc.host); !errors.Is(err, tc.strict) {
			t.Errorf("CheckStrict(%q) = %v, want %v", tc.host, err, tc.strict)
		}
	}
}

func TestLooksNumeric(t *testing.T) {
	for host, want := range map[string]bool{
		"010.0.0.1": true, "127.1": true, "0x7f.1": true, "10.0.0.256.": true,
		"10.0.0.1a": false, "db.internal": false, "db.1": false,
	} {
		if got := hostname.LooksNumeric(host); got != want {
			t.Errorf("LooksNumeric(%q) = %v, want %v", host, got, want)
		}
	}
}

// FuzzStrictWithinCheck: whatever CheckStrict accepts, Check accepts.
func FuzzStrictWithinCheck(f *testing.F) {
	for _, s := range []string{"db.internal", "10.0.0.1a", "0x7f.1", "a.b.", "_x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if hostname.CheckStrict(s) == nil && hostname.Check(s) != nil {
			t.Fatalf("CheckStrict accepts %q, Check refuses it: %v", s, hostname.Check(s))
		}
	})
}
