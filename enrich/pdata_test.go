package enrich

import (
	"context"
	"fmt"
	"net/netip"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pprofile"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// PdataStamper applies the same rules as Stamper to decoded pdata. It is the
// straightforward implementation (unmarshal, put attributes, marshal) that
// the wire stamper is tested and measured against. It is safe for
// concurrent use.
type PdataStamper struct {
	e engine
}

// NewPdataStamper compiles cfg; r may be nil (no pod is ever found).
func NewPdataStamper(cfg Config, r Resolver, opts ...Option) (*PdataStamper, error) {
	rs, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	return &PdataStamper{e: newEngine(rs, r, opts)}, nil
}

// Enrich has the contract of Stamper.Enrich, implemented by a pdata round
// trip: the output is semantically equal to Stamper's, not byte-identical
// (unknown fields are dropped, fields re-ordered).
func (s *PdataStamper) Enrich(ctx context.Context, sig Signal, peer netip.Addr, body, dst []byte) ([]byte, Result, error) {
	ps := peerState{sig: sig, peer: Peer{Addr: peer.Unmap()}, size: len(body)}
	var (
		out []byte
		err error
	)
	switch sig {
	case Traces:
		var td ptrace.Traces
		if td, err = (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(body); err != nil {
			break
		}
		if err = s.traces(ctx, td, &ps); err != nil {
			return nil, "", err
		}
		out, err = (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	case Metrics:
		var md pmetric.Metrics
		if md, err = (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(body); err != nil {
			break
		}
		if err = s.metrics(ctx, md, &ps); err != nil {
			return nil, "", err
		}
		out, err = (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	case Logs:
		var ld plog.Logs
		if ld, err = (&plog.ProtoUnmarshaler{}).UnmarshalLogs(body); err != nil {
			break
		}
		if err = s.logs(ctx, ld, &ps); err != nil {
			return nil, "", err
		}
		out, err = (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	case Profiles:
		var pd pprofile.Profiles
		if pd, err = (&pprofile.ProtoUnmarshaler{}).UnmarshalProfiles(body); err != nil {
			break
		}
		if err = s.profiles(ctx, pd, &ps); err != nil {
			return nil, "", err
		}
		out, err = (&pprofile.ProtoMarshaler{}).MarshalProfiles(pd)
	default:
		return nil, "", fmt.Errorf("enrich: unknown signal %d", sig)
	}
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return append(dst[:0], out...), ps.result(), nil
}

// StampTraces stamps every resource of td in place.
func (s *PdataStamper) StampTraces(ctx context.Context, peer Peer, td ptrace.Traces) (Result, error) {
	ps := peerState{sig: Traces, peer: Peer{Addr: peer.Addr.Unmap(), Accepted: peer.Accepted}}
	err := s.traces(ctx, td, &ps)
	return ps.result(), err
}

// StampMetrics stamps every resource of md in place.
func (s *PdataStamper) StampMetrics(ctx context.Context, peer Peer, md pmetric.Metrics) (Result, error) {
	ps := peerState{sig: Metrics, peer: Peer{Addr: peer.Addr.Unmap(), Accepted: peer.Accepted}}
	err := s.metrics(ctx, md, &ps)
	return ps.result(), err
}

// StampLogs stamps every resource of ld in place.
func (s *PdataStamper) StampLogs(ctx context.Context, peer Peer, ld plog.Logs) (Result, error) {
	ps := peerState{sig: Logs, peer: Peer{Addr: peer.Addr.Unmap(), Accepted: peer.Accepted}}
	err := s.logs(ctx, ld, &ps)
	return ps.result(), err
}

// StampProfiles stamps every resource of pd in place.
func (s *PdataStamper) StampProfiles(ctx context.Context, peer Peer, pd pprofile.Profiles) (Result, error) {
	ps := peerState{sig: Profiles, peer: Peer{Addr: peer.Addr.Unmap(), Accepted: peer.Accepted}}
	err := s.profiles(ctx, pd, &ps)
	return ps.result(), err
}

func (s *PdataStamper) traces(ctx context.Context, td ptrace.Traces, ps *peerState) error {
	rs := td.ResourceSpans()
	for i := 0; i < rs.Len(); i++ {
		if err := s.stamp(ctx, rs.At(i).Resource(), ps); err != nil {
			return err
		}
	}
	return nil
}

func (s *PdataStamper) metrics(ctx context.Context, md pmetric.Metrics, ps *peerState) error {
	rs := md.ResourceMetrics()
	for i := 0; i < rs.Len(); i++ {
		if err := s.stamp(ctx, rs.At(i).Resource(), ps); err != nil {
			return err
		}
	}
	return nil
}

func (s *PdataStamper) logs(ctx context.Context, ld plog.Logs, ps *peerState) error {
	rs := ld.ResourceLogs()
	for i := 0; i < rs.Len(); i++ {
		if err := s.stamp(ctx, rs.At(i).Resource(), ps); err != nil {
			return err
		}
	}
	return nil
}

func (s *PdataStamper) profiles(ctx context.Context, pd pprofile.Profiles, ps *peerState) error {
	rs := pd.ResourceProfiles()
	for i := 0; i < rs.Len(); i++ {
		if err := s.stamp(ctx, rs.At(i).Resource(), ps); err != nil {
			return err
		}
	}
	return nil
}

func pdataClientValue(m pcommon.Map, k string) clientValue {
	v, ok := m.Get(k)
	if !ok {
		return clientValue{}
	}
	return pdataValue(v)
}

func pdataValue(v pcommon.Value) clientValue {
	switch v.Type() {
	case pcommon.ValueTypeEmpty:
		return clientValue{}
	case pcommon.ValueTypeStr:
		return clientValue{present: v.Str() != "", isStr: true, str: v.Str()}
	case pcommon.ValueTypeInt:
		return clientValue{present: true, isInt: true, i: v.Int()}
	}
	return clientValue{present: true}
}

func pdataStr(m pcommon.Map, k string) string {
	if v, ok := m.Get(k); ok && v.Type() == pcommon.ValueTypeStr {
		return v.Str()
	}
	return ""
}

// stamp applies the rules to one resource.
func (s *PdataStamper) stamp(ctx context.Context, res pcommon.Resource, ps *peerState) error {
	attrs := res.Attributes()
	k := resKeys{
		uid:           pdataStr(attrs, AttrPodUID),
		ip:            pdataStr(attrs, AttrPodIP),
		name:          pdataStr(attrs, AttrPodName),
		namespace:     pdataStr(attrs, AttrNamespaceName),
		containerID:   pdataStr(attrs, AttrContainerID),
		containerName: pdataStr(attrs, AttrContainerName),
	}
	if v, ok := attrs.Get(AttrRestartCount); ok {
		k.restart, k.restartSet = restartCount(pdataValue(v))
	}
	pod, fam, untrusted, err := s.e.podOf(ctx, &k, ps)
	if err != nil || pod == nil {
		return err
	}
	c := chooseContainer(pod, &k)
	var conflicts uint32
	if untrusted {
		var claims []Claim
		for key, v := range attrs.All() {
			cv := pdataValue(v)
			idx, bad := s.e.contradicts(pod, key, cv)
			if !bad || conflicts&(1<<idx) != 0 {
				continue
			}
			conflicts |= 1 << idx
			claims = append(claims, claimOf(idx, cv))
		}
		if conflicts != 0 {
			s.e.report(ps, pod, claims)
			attrs.RemoveIf(func(key string, _ pcommon.Value) bool {
				idx := identityIndex(key)
				return idx >= 0 && conflicts&(1<<idx) != 0
			})
			for idx := range numIdentityKeys {
				if v := identityValue(pod, idx, c, fam); conflicts&(1<<idx) != 0 && v != "" {
					attrs.PutStr(identityKeys[idx], v)
				}
			}
		}
	}
	for _, a := range s.e.r.podAttrs(pod, c, fam) {
		if idx := identityIndex(a.key); idx >= 0 && conflicts&(1<<idx) != 0 {
			continue // replaced above
		}
		if s.e.r.replaces(a.key, a.value, pdataClientValue(attrs, a.key)) {
			if listKeys[a.key] { // an array of one string
				attrs.PutEmptySlice(a.key).AppendEmpty().SetStr(a.value)
				continue
			}
			attrs.PutStr(a.key, a.value)
		}
	}
	return nil
}
