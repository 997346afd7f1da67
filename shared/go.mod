module github.com/socket-warp/socket-warp/shared

go 1.26.8

require (
	github.com/fsnotify/fsnotify v1.10.1
	github.com/quic-go/quic-go v0.65.0
	go.uber.org/goleak v1.3.0
	go.uber.org/zap v1.28.0
)

require (
	go.uber.org/multierr v1.10.0 // indirect
	golang.org/x/crypto v0.54.0 // indirect
	golang.org/x/net v0.56.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
)
