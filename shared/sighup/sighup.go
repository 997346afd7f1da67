// Package sighup runs a reload on every SIGHUP, the Unix convention for
// "re-read your files". Without it a Go program dies on SIGHUP.
package sighup

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Handle calls reload for each SIGHUP until ctx ends or stop is called; stop
// waits for a reload in progress.
func Handle(ctx context.Context, reload func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				reload()
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		cancel()
		<-done
	}
}
