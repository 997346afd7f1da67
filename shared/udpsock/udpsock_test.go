package udpsock

import (
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestListenGrowsBuffersOrSaysWhy(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	c, err := Listen("127.0.0.1:0", zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	logs = logs.FilterMessageSnippet("udp buffers")
	rcv, snd := grow(c)
	if rcv >= WantBuffer && snd >= WantBuffer {
		if logs.Len() != 0 {
			t.Fatalf("warned although the buffers are big enough: %v", logs.All())
		}
		return
	}
	// The kernel capped them (an unprivileged process): one line with the fix.
	if logs.Len() != 1 || logs.All()[0].ContextMap()["fix"] == nil {
		t.Fatalf("buffers rcv=%d snd=%d below %d, but the log is %v", rcv, snd, WantBuffer, logs.All())
	}
}

func TestListenBadAddress(t *testing.T) {
	if _, err := Listen("not an address", zap.NewNop()); err == nil {
		t.Fatal("want an error")
	}
}

func TestGSOFollowsQUICGoSwitch(t *testing.T) {
	c, err := Listen("127.0.0.1:0", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("QUIC_GO_DISABLE_GSO", "true")
	if ok, why := gso(c); ok || !strings.Contains(why, "QUIC_GO_DISABLE_GSO") {
		t.Errorf("with QUIC_GO_DISABLE_GSO=true: gso = %v, %q; want false naming the variable", ok, why)
	}
	t.Setenv("QUIC_GO_DISABLE_GSO", "false")
	if ok, why := gso(c); !ok && why == "" {
		t.Error("GSO reported unavailable without a reason")
	}
}
