// Command sw-echo is a tiny TCP echo service: the demo's target. It copies
// back what it reads and closes its write side when the client does.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:7000", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sw-echo: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "sw-echo: listening on %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, func() { ln.Close() })
	var wg sync.WaitGroup
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		wg.Go(func() {
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			if _, err := io.Copy(c, c); err == nil {
				c.(*net.TCPConn).CloseWrite()
			}
		})
	}
	wg.Wait()
}
