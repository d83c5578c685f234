package proxy

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"github.com/podstamp/podstamp/enrich"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// serviceDesc is the hand-written descriptor of one OTLP Export service. Its
// handler receives the request as raw bytes (the raw codec) and returns the
// upstream's response bytes untouched.
func (p *Proxy) serviceDesc(sig enrich.Signal) *grpc.ServiceDesc {
	info := &signals[sig]
	return &grpc.ServiceDesc{
		ServiceName: info.service,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Export",
			Handler: func(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
				var req frame
				err := dec(&req)
				// The tap's reservation and peer slot (limits.go) become
				// this handler's once the message is in; it gives them back.
				c := charge{l: p.lim}
				defer c.done()
				if cc := grpcConnOf(ctx); cc != nil {
					c.peer = cc.peer
					if cc.take(ctx.Done()) {
						c.n = p.lim.grpcReserve
						defer cc.peer.leave()
					}
				}
				if err != nil {
					// Over MaxGRPCRequestBytes (after decompression), undecodable,
					// or the stream ended.
					o := outcomeBadRequest
					switch status.Code(err) {
					case codes.ResourceExhausted:
						o = outcomeTooLarge
					case codes.Canceled, codes.DeadlineExceeded:
						o = outcomeCanceled
					}
					p.count(sig, protoGRPC, o, 0)
					return nil, err
				}
				// True up to what the message needs from here on: less than
				// the reservation, which was for the largest message.
				if !c.set(httpCost(int64(req.data.Len()))) {
					req.data.Free()
					return nil, p.reject(sig, protoGRPC, c.why).Err()
				}
				return p.exportGRPC(ctx, sig, &req)
			},
		}},
		Metadata: "podstamp",
	}
}

func (p *Proxy) exportGRPC(ctx context.Context, sig enrich.Signal, req *frame) (any, error) {
	p.m.inflight.Inc()
	defer p.m.inflight.Dec()

	body := req.data.MaterializeToBuffer(bufPool)
	req.data.Free()
	req.data = nil

	resp, err := p.forward(ctx, sig, protoGRPC, grpcPeer(ctx), body, p.grpcHeaders(ctx))
	if err != nil {
		return nil, err
	}
	return &frame{data: resp}, nil
}

// grpcHeaders returns the allow-listed incoming metadata as key, value pairs.
func (p *Proxy) grpcHeaders(ctx context.Context) []string {
	var out []string
	for _, k := range p.allowList {
		for _, v := range metadata.ValueFromIncomingContext(ctx, k) {
			out = append(out, k, v)
		}
	}
	return out
}

// peerAddr returns the address of the connection's peer, IPv4 in 4-byte form.
func peerAddr(ctx context.Context) netip.Addr {
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.Addr == nil {
		return netip.Addr{}
	}
	if ta, ok := pr.Addr.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(pr.Addr.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// normHeader lower-cases a header name and drops names that must never be
// forwarded (HTTP/2 pseudo headers, gRPC's own, hop-by-hop and framing).
func normHeader(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	switch {
	case h == "", strings.HasPrefix(h, ":"), strings.HasPrefix(h, "grpc-"):
		return ""
	}
	switch h {
	case "content-type", "content-length", "content-encoding", "te", "connection",
		"transfer-encoding", "host", "keep-alive", "upgrade", "user-agent":
		return ""
	}
	return h
}
