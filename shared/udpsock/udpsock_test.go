package udpsock

import (
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
