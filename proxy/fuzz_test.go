package proxy

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/podstamp/podstamp/enrich"
)

// fuzzSeeds are the in-code seeds of FuzzHTTPHandler; testdata/fuzz holds
// more (regenerate with PODSTAMP_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus).
type fuzzSeed struct {
	path, contentType string
	gzip              bool
	body              []byte
}

func fuzzSeeds(t testing.TB) []fuzzSeed {
	var seeds []fuzzSeed
	for _, sig := range enrich.Signals {
		pb, js := payload(t, sig, 2)
		seeds = append(seeds,
			fuzzSeed{HTTPPath(sig), contentTypeProtobuf, false, pb},
			fuzzSeed{HTTPPath(sig), contentTypeJSON, false, js},
			fuzzSeed{HTTPPath(sig), contentTypeProtobuf, true, gzipBytes(t, pb)},
			fuzzSeed{HTTPPath(sig), contentTypeJSON + "; charset=utf-8", true, gzipBytes(t, js)},
		)
	}
	for _, m := range malformedRequests {
		seeds = append(seeds, fuzzSeed{"/v1/logs", contentTypeProtobuf, false, m.body})
	}
	seeds = append(seeds,
		fuzzSeed{"/v1/traces", contentTypeJSON, false, []byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"a","value":{"intValue":"1"}}]}}]}`)},
		fuzzSeed{"/v1/traces", "text/plain", false, []byte("hello")},
		fuzzSeed{"/v2/traces", contentTypeProtobuf, false, []byte{}},
		fuzzSeed{"/v1/metrics", contentTypeProtobuf, true, []byte("not gzip")},
		fuzzSeed{"/v1/traces", contentTypeProtobuf, false, deepDefect()},
	)
	return seeds
}

// FuzzHTTPHandler drives the OTLP/HTTP handler with arbitrary paths, content
// types and bodies against a real loopback upstream. Whatever the input, the
// handler answers with one of the statuses OTLP/HTTP allows, never forwards
// what it rejects, and forwards accepted protobuf byte for byte.
func FuzzHTTPHandler(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.path, s.contentType, s.gzip, s.body)
	}
	up := newGRPCUpstream(f)
	cfg := DefaultConfig()
	cfg.Upstream = up.targets()
	cfg.MaxRequestBytes = 1 << 20
	p, err := New(cfg, Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { p.Close() })
	h := p.HTTPHandler()

	f.Fuzz(func(t *testing.T, path, contentType string, gz bool, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.URL.Path = path
		req.Header.Set("Content-Type", contentType)
		if gz {
			req.Header.Set("Content-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		var forwarded *received
		select {
		case r := <-up.got:
			forwarded = &r
		default:
		}
		switch rec.Code {
		case 200:
			if forwarded == nil {
				t.Fatal("200 without forwarding")
			}
			if rec.Header().Get("Content-Type") != contentTypeProtobuf && rec.Header().Get("Content-Type") != contentTypeJSON {
				t.Fatalf("200 with Content-Type %q", rec.Header().Get("Content-Type"))
			}
			if rec.Header().Get("Content-Type") == contentTypeProtobuf {
				want := body
				if gz {
					want = gunzip(t, body)
				}
				if !bytes.Equal(forwarded.body, want) {
					t.Fatal("accepted protobuf not forwarded byte for byte")
				}
			}
		case 400, 404, 405, 413, 415:
			if forwarded != nil {
				t.Fatalf("HTTP %d but the request was forwarded", rec.Code)
			}
		default:
			t.Fatalf("unexpected HTTP %d: %s", rec.Code, rec.Body.Bytes())
		}
	})
}

func gunzip(t *testing.T, b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzHTTPHandler from the
// in-code seeds when PODSTAMP_WRITE_FUZZ_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("PODSTAMP_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set PODSTAMP_WRITE_FUZZ_CORPUS=1 to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzHTTPHandler")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds(t) {
		content := fmt.Sprintf("go test fuzz v1\nstring(%s)\nstring(%s)\nbool(%v)\n[]byte(%s)\n",
			strconv.Quote(s.path), strconv.Quote(s.contentType), s.gzip, strconv.Quote(string(s.body)))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
