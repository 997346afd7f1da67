module github.com/socket-warp/socket-warp/connector

go 1.26.8

replace github.com/socket-warp/socket-warp/shared => ../shared

require (
	github.com/kelseyhightower/envconfig v1.4.0
	github.com/pires/go-proxyproto v0.15.0
	github.com/quic-go/quic-go v0.65.0
	github.com/smallstep/pkcs7 v0.2.1
	github.com/smallstep/scep v0.0.0-20260331191114-261f960a40d1
	github.com/socket-warp/socket-warp/shared v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
	go.uber.org/zap v1.28.0
)

require (
	github.com/fsnotify/fsnotify v1.10.1 // indirect
	go.uber.org/multierr v1.10.0 // indirect
	golang.org/x/crypto v0.54.0 // indirect
	golang.org/x/net v0.56.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
)
