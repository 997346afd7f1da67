package sighup

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/socket-warp/socket-warp/shared/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }

func TestHandleReloadsOnSIGHUP(t *testing.T) {
	reloaded := make(chan struct{}, 1)
	stop := Handle(context.Background(), func() { reloaded <- struct{}{} })
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reloaded:
	case <-time.After(30 * time.Second): // safety net only
		t.Fatal("no reload after SIGHUP")
	}
}

func TestStopEndsTheGoroutine(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stop := Handle(ctx, func() {})
	cancel()
	stop() // must return, and goleak checks nothing is left
}
