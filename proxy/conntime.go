package proxy

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc/stats"

	"github.com/podstamp/podstamp/enrich"
)

// connTimer records when each gRPC connection was accepted (enrich.WithConnTime),
// so the resolver can tell a pod that was already deleted when the connection
// was opened from the pod that sent on it. It does nothing per RPC.
type connTimer struct{}

func (connTimer) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return enrich.WithConnTime(ctx, time.Now())
}
func (connTimer) HandleConn(context.Context, stats.ConnStats) {}
func (connTimer) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}
func (connTimer) HandleRPC(context.Context, stats.RPCStats) {}

// httpConnContext does the same for HTTP connections.
func httpConnContext(ctx context.Context, _ net.Conn) context.Context {
	return enrich.WithConnTime(ctx, time.Now())
}
