package proxy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/podstamp/podstamp/enrich"
	"github.com/podstamp/podstamp/enrich/enrichtest"
)

// TestConcurrentIntegrity: many concurrent requests of mixed sizes, signals
// and ingresses, through an Enricher that sometimes grows the request and
// through the wire stamper's segments (which reference the pooled request
// buffers until the upstream is done with them), to gRPC and HTTP upstreams
// with and without compression: every upstream request is exactly one
// stamped client request (buffer reuse never mixes requests up).
func TestConcurrentIntegrity(t *testing.T) {
	grow := funcEnricher(func(_ context.Context, _ enrich.Signal, _ enrich.Peer, body, dst []byte) ([]byte, enrich.Result, error) {
		out := append(dst[:0], body...)
		if len(body)%3 == 0 { // sometimes beyond the offered capacity
			for range 3000 {
				out = append(out, emptyResource...)
			}
		}
		return append(out, emptyResource...), enrich.ResultHit, nil
	})
	stamper := newSegStamper(t, enrichtest.New(loopbackPod()))
	for _, e := range []struct {
		name string
		e    Enricher
	}{{"copy", grow}, {"segments", stamper}} {
		t.Run(e.name, func(t *testing.T) { testConcurrentIntegrity(t, e.e) })
	}
	if stamper.refs.Load() == 0 {
		t.Error("no segment referenced a request")
	}
}

func testConcurrentIntegrity(t *testing.T, e Enricher) {
	stamped := func(sig enrich.Signal, body []byte) []byte {
		out, _, err := stampedBytes(e, sig, body)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, c := range upstreamLegs {
		t.Run(c.name, func(t *testing.T) {
			up, targets := c.start(t)
			tp := newTestProxy(t, targets, func(_ *Config, o *Options) { o.Enricher = e })

			const workers, perWorker = 6, 12
			want := map[[32]byte]int{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					for i := range perWorker {
						sig := enrich.Signals[rng.IntN(len(enrich.Signals))]
						body, _ := payload(t, sig, 1+rng.IntN(600))
						body = append(body, fmt.Appendf(nil, "\x1a\x08w%03di%03d", w, i)...) // unique unknown field 3
						in := protobufIngresses[rng.IntN(len(protobufIngresses))]
						mu.Lock()
						want[sha256.Sum256(stamped(sig, body))]++
						mu.Unlock()
						if _, err := tp.send(t, in, sig, body); err != nil {
							t.Errorf("%s/%s: %v", in.name, sig, err)
						}
					}
				}()
			}
			wg.Wait()
			for range workers * perWorker {
				got := up.next(t)
				h := sha256.Sum256(got.body)
				if want[h] == 0 {
					t.Fatalf("upstream got a %d-byte request that no client sent", len(got.body))
				}
				want[h]--
			}
		})
	}
}
