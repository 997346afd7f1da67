module github.com/socket-warp/socket-warp/example/devca

go 1.26.8

require (
	github.com/smallstep/pkcs7 v0.2.1
	github.com/smallstep/scep v0.0.0-20260331191114-261f960a40d1
	github.com/socket-warp/socket-warp/shared v0.0.0-00010101000000-000000000000
	go.uber.org/goleak v1.3.0
	go.uber.org/zap v1.28.0
	golang.org/x/sync v0.23.0
)

require (
	go.uber.org/multierr v1.10.0 // indirect
	golang.org/x/crypto v0.57.0 // indirect
)

replace github.com/socket-warp/socket-warp/shared => ../../shared
