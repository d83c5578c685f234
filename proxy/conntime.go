package proxy

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"

	"github.com/podstamp/podstamp/enrich"
)

// connTimeCreds are plaintext transport credentials that record when each
// gRPC connection was accepted, so the resolver can tell a pod that was
// already deleted when the connection was opened from the pod that sent on
// it (enrich.WithConnTime). The time travels in the connection's AuthInfo,
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

// withGRPCConnTime records the accept time of the request's connection in
// ctx, if the connection came through connTimeCreds.
func withGRPCConnTime(ctx context.Context) context.Context {
	if pr, ok := peer.FromContext(ctx); ok {
		if ci, ok := pr.AuthInfo.(connInfo); ok {
			return enrich.WithConnTime(ctx, ci.accepted)
		}
	}
	return ctx
}

// httpConnContext does the same for HTTP connections.
func httpConnContext(ctx context.Context, _ net.Conn) context.Context {
	return enrich.WithConnTime(ctx, time.Now())
}
