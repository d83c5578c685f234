package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/podstamp/podstamp/enrich"
)

// TestSlowClients: a client that never finishes its headers, or its body, is
// disconnected after the header / read timeouts.
func TestSlowClients(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets(), func(c *Config, _ *Options) {
		c.ReadHeaderTimeout = 200 * time.Millisecond
		c.ReadTimeout = 400 * time.Millisecond
	})
	for name, partial := range map[string]string{
		"headers": "POST /v1/traces HTTP/1.1\r\nHost: podstamp\r\n",
		"body":    "POST /v1/traces HTTP/1.1\r\nHost: podstamp\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100\r\n\r\n\x0a\x00",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", tp.HTTPAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, partial); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			rest, err := io.ReadAll(conn) // until the server closes
			if err != nil {
				t.Fatalf("connection not closed by the server: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("slow client held the connection for %v", d)
			}
			if name == "body" {
				resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(rest)), nil)
				if err == nil && resp.StatusCode == 200 {
					t.Error("truncated body was accepted")
				}
			}
			up.none(t)
		})
	}
}

// TestHTTPIngressH2C: OTLP/HTTP also works over cleartext HTTP/2.
func TestHTTPIngressH2C(t *testing.T) {
	up := newGRPCUpstream(t)
	tp := newTestProxy(t, up.targets())
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: tr}
	defer hc.CloseIdleConnections()
	body, _ := payload(t, enrich.Traces, 2)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, tp.httpURL+"/v1/traces", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentTypeProtobuf)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Errorf("HTTP/%d %d, want HTTP/2 200", resp.ProtoMajor, resp.StatusCode)
	}
	if got := up.next(t); !bytes.Equal(got.body, body) {
		t.Error("body changed")
	}
}
