package listener

import (
	"errors"
	"testing"

	"github.com/socket-warp/socket-warp/listener/port"
	"github.com/socket-warp/socket-warp/shared/wire"
)

// TestStreamHeaderProxyProtocol: the port's proxy_protocol becomes the
// header's, with the local address only then; a value the API would refuse
// makes the header invalid rather than PROXY-less.
func TestStreamHeaderProxyProtocol(t *testing.T) {
	p := port.Spec{UID: "swc-1", Port: 8443, ConnectAddress: "web", ConnectPort: 443}
	for _, tc := range []struct {
		proxy string
		want  byte
	}{{"", wire.ProxyOff}, {port.ProxyV1, wire.ProxyV1}, {port.ProxyV2, wire.ProxyV2}} {
		p.ProxyProtocol = tc.proxy
		h := streamHeader(p, nil)
		if err := h.Validate(); err != nil || h.ProxyProtocol != tc.want || (h.LocalAddr != "") != (tc.want != wire.ProxyOff) {
			t.Errorf("proxy_protocol %q: header %+v, %v", tc.proxy, h, err)
		}
	}
	p.ProxyProtocol = "v7"
	if err := streamHeader(p, nil).Validate(); !errors.Is(err, wire.ErrMalformedHeader) {
		t.Errorf("proxy_protocol v7: Validate = %v, want a refusal", err)
	}
}
