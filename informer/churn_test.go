package informer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"

	"github.com/podstamp/podstamp/informer/kubetypes"
)

// TestChurnNoWrongIdentity creates, finishes and deletes pods and reuses
// their addresses while resolvers run concurrently. Once the cache has seen
// generation g of an address, a resolver that starts afterwards must get g or
// a newer generation, never an older pod and never a pod without the address;
// and every address that ever had a pod resolves (100% stamped).
func TestChurnNoWrongIdentity(t *testing.T) {
	const (
		nIPs   = 8
		rounds = 200
	)
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))

	h := newHarness(t, Config{HoldTimeout: 10 * time.Second, PodDeleteGrace: time.Hour})
	h.start()

	ips := make([]netip.Addr, nIPs)
	for i := range ips {
		ips[i] = netip.MustParseAddr(fmt.Sprintf("10.9.0.%d", i+1))
	}
	established := make([]atomic.Int64, nIPs) // newest generation the cache has applied
	gen := make([]int, nIPs)                  // newest generation created (churner only)
	live := make([]map[int]bool, nIPs)        // generations not deleted yet (churner only)
	for i := range live {
		live[i] = map[int]bool{}
	}
	spec := func(i, g int) podSpec {
		return podSpec{name: fmt.Sprintf("p-%d-%d", i, g), uid: fmt.Sprintf("u-%d-%d", i, g),
			ips: []string{ips[i].String()}, start: t0.Add(time.Duration(g) * time.Second)}
	}

	var wrong, unstamped, resolves, holds atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 3 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(seed), uint64(w+2)))
			for {
				select {
				case <-stop:
					return
				default:
					runtime.Gosched() // leave the churn some CPU on small machines
				}
				i := r.IntN(nIPs)
				g0 := established[i].Load()
				peer := ips[i]
				if r.IntN(2) == 0 {
					peer = netip.AddrFrom16(peer.As16()) // IPv4-mapped
				}
				p, res, err := h.c.ResolvePeer(context.Background(), enrich.Peer{Addr: peer}, 100)
				resolves.Add(1)
				if res == enrich.ResultHoldHit {
					holds.Add(1)
				}
				if err != nil {
					t.Errorf("resolve: %v", err)
					return
				}
				if p == nil {
					if g0 > 0 {
						unstamped.Add(1)
						t.Errorf("%s (generation %d established) resolved to nothing: %v", ips[i], g0, res)
					}
					continue
				}
				var pi, pg int
				if _, err := fmt.Sscanf(p.Name, "p-%d-%d", &pi, &pg); err != nil || pi != i || int64(pg) < g0 {
					wrong.Add(1)
					t.Errorf("%s (generation %d established) resolved to %s", ips[i], g0, p.Name)
				}
			}
		})
	}

	// Half the addresses start with a pod; the rest are held until created.
	for i := range nIPs / 2 {
		gen[i] = 1
		live[i][1] = true
		h.create(mkPod(spec(i, 1)))
		h.waitEvent("upsert", fmt.Sprintf("u-%d-1", i))
		established[i].Store(1)
	}
	// The churn is realistic about one thing only: an address is given to a
	// new pod after its previous pod released it, i.e. finished or was
	// deleted (its record may linger, finished, in the API). Events, lookups
	// and deletes of old records interleave freely.
	finished := make([]map[int]bool, nIPs)
	for i := range finished {
		finished[i] = map[int]bool{}
	}
	update := func(i, g int, label string) {
		s := spec(i, g)
		if finished[i][g] {
			s.phase = kubetypes.PodSucceeded
		}
		if label != "" {
			s.labels = map[string]string{"round": label}
		}
		h.update(mkPod(s))
	}
	for round := range rounds {
		i := rng.IntN(nIPs)
		newest := gen[i]
		switch op := rng.IntN(4); {
		case op == 0 && live[i][newest]: // delete the newest pod, then reuse its address
			h.delete(mkPod(spec(i, newest)))
			delete(live[i], newest)
			h.waitEvent("delete", fmt.Sprintf("u-%d-%d", i, newest))
			fallthrough
		case op <= 1: // the newest pod finishes (if it has not), a new pod takes the address
			if live[i][newest] && !finished[i][newest] {
				finished[i][newest] = true
				update(i, newest, "")
			}
			gen[i]++
			live[i][gen[i]] = true
			h.create(mkPod(spec(i, gen[i])))
			h.waitEvent("upsert", fmt.Sprintf("u-%d-%d", i, gen[i]))
			established[i].Store(int64(gen[i]))
		case op == 2: // an old record is deleted late, or the newest pod finishes
			for g := range live[i] {
				if g != newest {
					h.delete(mkPod(spec(i, g)))
					delete(live[i], g)
				} else if !finished[i][g] {
					finished[i][g] = true
					update(i, g, "")
				}
				break
			}
		default: // an update that changes nothing about the address
			if live[i][newest] {
				update(i, newest, fmt.Sprint(round))
			}
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d resolves, %d held then hit, %d wrong, %d unstamped", resolves.Load(), holds.Load(), wrong.Load(), unstamped.Load())
	if wrong.Load() != 0 || unstamped.Load() != 0 {
		t.Fatalf("%d wrong identities, %d unstamped", wrong.Load(), unstamped.Load())
	}
	if resolves.Load() < rounds {
		t.Errorf("only %d resolves ran", resolves.Load())
	}
}
