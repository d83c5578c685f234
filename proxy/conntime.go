package proxy

import (
	"context"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"

	"github.com/podstamp/podstamp/enrich"
)

// connTimeCreds are plaintext transport credentials that record when each
// gRPC connection was accepted, so the resolver can tell a pod that was
// already deleted when the connection was opened from the pod that sent on
// it (enrich.Peer.Accepted). The time travels in the connection's AuthInfo,
// which gRPC hands to every RPC in its peer.Peer; unlike a stats handler,
// nothing runs or is allocated per RPC event.
type connTimeCreds struct {
	credentials.TransportCredentials
}

func newConnTimeCreds() credentials.TransportCredentials {
	return connTimeCreds{insecure.NewCredentials()}
}

// connInfo is the AuthInfo of a plaintext connection with its accept time.
type connInfo struct {
	credentials.CommonAuthInfo
	accepted time.Time
	conn     *capConn // nil unless accepted through a capListener
}

func (connInfo) AuthType() string { return "insecure" }

func (c connTimeCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cc, _ := conn.(*capConn)
	return conn, connInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity},
		accepted:       time.Now(),
		conn:           cc,
	}, nil
}

func (c connTimeCreds) Clone() credentials.TransportCredentials { return c }

// grpcPeer is the connection of a gRPC request: its peer address and, if
// the connection came through connTimeCreds, its accept time.
func grpcPeer(ctx context.Context) enrich.Peer {
	p := enrich.Peer{Addr: peerAddr(ctx)}
	if pr, ok := peer.FromContext(ctx); ok {
		if ci, ok := pr.AuthInfo.(connInfo); ok {
			p.Accepted = ci.accepted
		}
	}
	return p
}

// httpConnKey carries an HTTP connection's httpConn in its requests' context.
type httpConnKey struct{}

// httpConn is what the proxy knows of an HTTP connection.
type httpConn struct {
	accepted time.Time
	conn     *capConn // nil unless accepted through a capListener
}

// httpConnContext records the connection's accept time and, when it came
// through a capListener, the connection itself.
func httpConnContext(ctx context.Context, c net.Conn) context.Context {
	cc, _ := c.(*capConn)
	return context.WithValue(ctx, httpConnKey{}, &httpConn{accepted: time.Now(), conn: cc})
}

// httpConnOf returns what httpConnContext recorded for r's connection.
func httpConnOf(r *http.Request) *httpConn {
	hc, _ := r.Context().Value(httpConnKey{}).(*httpConn)
	if hc == nil {
		return &httpConn{}
	}
	return hc
}

// httpPeer is the connection of an HTTP request.
func httpPeer(r *http.Request) enrich.Peer {
	return enrich.Peer{Addr: remoteAddr(r), Accepted: httpConnOf(r).accepted}
}
