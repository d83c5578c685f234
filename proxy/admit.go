package proxy

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// admission is who may send through the proxy (Options.Admit) and what
// upstream headers the sender's identity sets (Options.IdentityHeaders).
type admission struct {
	admit    func(peer netip.Addr) error
	byMethod map[string]enrich.Signal // gRPC full method -> signal, to count refusals
	lastLog  atomic.Int64             // unix nanoseconds of the last refusal logged

	identity      func(peer netip.Addr) []string
	identityNames []string // lower-case; never forwarded from a client
}

func newAdmission(opts Options) *admission {
	a := &admission{admit: opts.Admit, identity: opts.IdentityHeaders, byMethod: map[string]enrich.Signal{}}
	for _, sig := range enrich.Signals {
		a.byMethod[signals[sig].method] = sig
	}
	for _, h := range opts.IdentityHeaderNames {
		if h = normHeader(h); h != "" && !slices.Contains(a.identityNames, h) {
			a.identityNames = append(a.identityNames, h)
		}
	}
	return a
}

// withoutIdentityNames drops the identity headers from the forwarding
// allow-list: a client must never choose the value of a header the proxy
// derives from its identity (e.g. its tenant), not even when its pod is
// unknown and the proxy sets nothing.
func (a *admission) withoutIdentityNames(allow []string) []string {
	return slices.DeleteFunc(allow, func(h string) bool { return slices.Contains(a.identityNames, h) })
}

// ForwardableHeader reports whether name may be sent upstream as a
// forwarded or identity header (gRPC's own, HTTP/2 pseudo, hop-by-hop and
// framing headers may not).
func ForwardableHeader(name string) bool { return normHeader(name) != "" }

// refusal returns nil when peer is admitted, else the error its client gets.
func (p *Proxy) refusal(peer netip.Addr) error {
	a := p.adm
	if a.admit == nil {
		return nil
	}
	err := a.admit(peer)
	if err == nil {
		return nil
	}
	now := time.Now().UnixNano()
	if last := a.lastLog.Load(); now-last >= int64(upstreamLogEvery) && a.lastLog.CompareAndSwap(last, now) {
		p.log.Warn("refused OTLP from a sender that is not admitted (logged at most every 10s)", "peer", peer.String(), "err", err)
	}
	return fmt.Errorf("podstamp does not accept OTLP from %s: %v", peer, err)
}

// inTap is the gRPC server's tap handle: it runs when a stream's headers
// arrive, before its message is read, so a refused sender's request is
// never read, let alone forwarded. It runs on the connection's reader
// goroutine: Admit must be quick. gRPC allows one tap handle per server;
// other checks that must run before the message is read belong here too.
func (p *Proxy) inTap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if err := p.refusal(peerAddr(ctx)); err != nil {
		if sig, ok := p.adm.byMethod[info.FullMethodName]; ok {
			p.count(sig, protoGRPC, outcomeForbidden, 0)
		}
		return ctx, status.Error(codes.PermissionDenied, err.Error())
	}
	return p.tapLimits(ctx, info) // reservation and peer slot (limits.go)
}

// admitHTTP answers a refused sender 403 with a google.rpc.Status in the
// request's encoding, before its body is read, and reports whether the
// request may go on.
func (p *Proxy) admitHTTP(w http.ResponseWriter, r *http.Request) bool {
	err := p.refusal(remoteAddr(r))
	if err == nil {
		return true
	}
	if sig, ok := signalByPath(r.URL.Path); ok {
		p.count(sig, protoHTTP, outcomeForbidden, 0)
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	// The body stays unread: close the connection rather than drain it
	// (HTTP/2 turns this into a GOAWAY).
	w.Header().Set("Connection", "close")
	writeStatus(w, mt == contentTypeJSON, http.StatusForbidden, "", status.New(codes.PermissionDenied, err.Error()))
	return false
}

// withIdentity appends the identity headers of peer's pod to the headers
// forwarded upstream. Only names declared in Options.IdentityHeaderNames
// are set.
func (p *Proxy) withIdentity(peer netip.Addr, hdr []string) []string {
	a := p.adm
	if a.identity == nil {
		return hdr
	}
	kv := a.identity(peer)
	for i := 0; i+1 < len(kv); i += 2 {
		if k := normHeader(kv[i]); k != "" && slices.Contains(a.identityNames, k) {
			hdr = append(hdr, k, kv[i+1])
		}
	}
	return hdr
}
