// Package logging builds the zap logger both daemons use and names the fields
// they share, so every line about the same thing carries the same key.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Field names used everywhere; dashboards and greps depend on them.
const (
	KeyUID       = "uid"
	KeyPort      = "port"
	KeyTarget    = "target"
	KeyRemote    = "remote"
	KeyStream    = "stream"
	KeyBytesUp   = "bytes_up"   // client → target
	KeyBytesDown = "bytes_down" // target → client
	KeyReason    = "reason"
	KeyDuration  = "duration"
)

func UID(uid string) zap.Field           { return zap.String(KeyUID, uid) }
func Port(port int) zap.Field            { return zap.Int(KeyPort, port) }
func Target(target string) zap.Field     { return zap.String(KeyTarget, target) }
func Remote(addr string) zap.Field       { return zap.String(KeyRemote, addr) }
func Stream(id int64) zap.Field          { return zap.Int64(KeyStream, id) }
func BytesUp(n int64) zap.Field          { return zap.Int64(KeyBytesUp, n) }
func BytesDown(n int64) zap.Field        { return zap.Int64(KeyBytesDown, n) }
func Reason(reason string) zap.Field     { return zap.String(KeyReason, reason) }
func Duration(d time.Duration) zap.Field { return zap.Duration(KeyDuration, d) }

// New returns a logger writing to stderr. level is debug, info, warn or error;
// format is console (for people) or json (for collectors).
func New(level, format string) (*zap.Logger, error) { return NewTo(os.Stderr, level, format) }

// NewTo is New writing to w.
func NewTo(w io.Writer, level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(strings.ToLower(strings.TrimSpace(level)))
	if err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	default:
		return nil, fmt.Errorf("log format %q: want console or json", format)
	}
	out := zapcore.Lock(zapcore.AddSync(w))
	return zap.New(zapcore.NewCore(enc, out, lvl), zap.ErrorOutput(out)), nil
}

// Sampling of Flood: per message, the first FloodFirst lines of each second
// are written, then one in FloodThereafter.
const (
	FloodFirst      = 10
	FloodThereafter = 100
)

// Flood returns log for lines that anyone on the network can cause at will
// (refused handshakes, refused clients): an unauthenticated peer must not be
// able to fill the disk through the log. The metrics count every refusal;
// the log keeps enough of them to explain what happens.
func Flood(log *zap.Logger) *zap.Logger {
	return log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, FloodFirst, FloodThereafter)
	}))
}
