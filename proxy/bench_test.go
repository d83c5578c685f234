package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
)

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// naiveProxy is the simplest raw gRPC forwarder one would write: an unknown
// service handler that materializes each request as []byte and re-invokes it
// upstream. It is the reference podstamp's forwarding path must beat.
func naiveProxy(b *testing.B, upstreamAddr string) string {
	cc, err := grpc.NewClient("passthrough:///"+upstreamAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(bytesCodec{})))
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(bytesCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var req, resp []byte
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		method, _ := grpc.MethodFromServerStream(stream)
		md, _ := metadata.FromIncomingContext(stream.Context())
		ctx := metadata.NewOutgoingContext(stream.Context(), md)
		if err := cc.Invoke(ctx, method, &req, &resp); err != nil {
			return err
		}
		return stream.SendMsg(&resp)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	b.Cleanup(func() { srv.Stop(); <-done; cc.Close() })
	return ln.Addr().String()
}

// BenchmarkForward measures what forwarding through podstamp costs, per
// request and per MiB, against a direct client-to-upstream baseline and a
// naive raw gRPC proxy, all in the same run and process. cpu-ns/op is the
// process's CPU time per request (client, proxy and upstream together);
// extra-cpu-ns/op is that minus the direct baseline's, i.e. the forwarder's
// own cost. podstamp-grpc-stamper finds no pod (nothing is added);
// podstamp-grpc-stamped stamps every request, to a gRPC or an HTTP upstream.
func BenchmarkForward(b *testing.B) {
	up := newGRPCUpstream(b)
	up.got = nil
	upAddr := up.endpoint[len("http://"):]
	naive := naiveProxy(b, upAddr)
	tp := newTestProxy(b, up.targets())
	stamper := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), nil)
	tpStamp := newTestProxy(b, up.targets(), func(_ *Config, o *Options) { o.Enricher = stamper })
	// The client's pod is known: every request is stamped (12 attributes).
	hit := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(loopbackPod()))
	tpHit := newTestProxy(b, up.targets(), func(_ *Config, o *Options) { o.Enricher = hit })
	upHTTP := newHTTPUpstream(b)
	upHTTP.got = nil
	tpHitHTTP := newTestProxy(b, upHTTP.targets(), func(_ *Config, o *Options) { o.Enricher = hit })

	dial := func(addr string) *grpc.ClientConn {
		cc, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(bytesCodec{})))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		return cc
	}
	targets := []struct {
		name string
		cc   *grpc.ClientConn
		http string
	}{
		{name: "direct", cc: dial(upAddr)},
		{name: "naive-grpc-proxy", cc: dial(naive)},
		{name: "podstamp-grpc", cc: dial(tp.GRPCAddr().String())},
		{name: "podstamp-grpc-stamper", cc: dial(tpStamp.GRPCAddr().String())},
		{name: "podstamp-grpc-stamped", cc: dial(tpHit.GRPCAddr().String())},
		{name: "podstamp-grpc-stamped-http-upstream", cc: dial(tpHitHTTP.GRPCAddr().String())},
		{name: "podstamp-http", http: tp.httpURL + "/v1/traces"},
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.Cleanup(hc.CloseIdleConnections)

	for _, size := range []struct {
		name  string
		spans int
	}{{"10spans", 10}, {"1000spans", 1000}, {"10000spans", 10000}} {
		body, _ := payload(b, enrich.Traces, size.spans)
		var mu sync.Mutex
		baseline := map[string]float64{}
		for _, tg := range targets {
			b.Run(fmt.Sprintf("%s/%s", size.name, tg.name), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				b.SetParallelism(4)
				cpu0 := cpuTime()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if tg.cc != nil {
							var resp []byte
							req := body
							if err := tg.cc.Invoke(context.Background(), signals[enrich.Traces].method, &req, &resp); err != nil {
								b.Error(err)
								return
							}
							continue
						}
						req, _ := http.NewRequest(http.MethodPost, tg.http, bytes.NewReader(body))
						req.Header.Set("Content-Type", contentTypeProtobuf)
						resp, err := hc.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						var sink bytes.Buffer
						sink.ReadFrom(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							b.Errorf("HTTP %d", resp.StatusCode)
							return
						}
					}
				})
				b.StopTimer()
				cpu := float64(cpuTime()-cpu0) / float64(b.N)
				b.ReportMetric(cpu, "cpu-ns/op")
				b.ReportMetric(cpu/float64(size.spans), "cpu-ns/span")
				b.ReportMetric(cpu*float64(1<<20)/float64(len(body)), "cpu-ns/MiB")
				mu.Lock()
				defer mu.Unlock()
				if tg.name == "direct" {
					baseline["cpu"] = cpu
				} else if base, ok := baseline["cpu"]; ok {
					b.ReportMetric(cpu-base, "extra-cpu-ns/op")
				}
			})
		}
	}
}

// BenchmarkStampStage measures forward's stamping stage alone on a received
// request in a pooled buffer: stamping, what goes upstream as buffers (the
// request referenced, the rest in a side buffer), the transport's copy of
// them into its write buffer, and freeing. held-B/op is the pooled side
// capacity, besides the request's buffer, taken for stamping and kept until
// the upstream answers.
func BenchmarkStampStage(b *testing.B) {
	stamper := enrich.NewStamper(enrichtest.Rules(enrich.DefaultConfig()), enrichtest.New(loopbackPod()))
	peer := enrich.Peer{Addr: netip.MustParseAddr("127.0.0.1")}
	for _, n := range []int{10, 512, 10000} {
		body, _ := payload(b, enrich.Traces, n)
		wire := make([]byte, 0, 2*len(body)+64<<10)
		b.Run(fmt.Sprintf("%dspans", n), func(b *testing.B) {
			var hint atomic.Int32
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				in := mem.Copy(body, bufPool)
				out, _, _, err := stampSegments(context.Background(), stamper, enrich.Traces, peer, in, &hint)
				if err != nil {
					b.Fatal(err)
				}
				wire = wire[:out.Len()]
				out.CopyTo(wire)
				out.Free()
			}
			held := poolClassSize(poolClass(max(minSideBytes, int(hint.Load())))) // the side buffer
			b.ReportMetric(float64(held), "held-B/op")
		})
	}
}
